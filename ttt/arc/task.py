"""The typed ARC task model: a task is demonstrations (train) and test examples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ttt.arc.grid import Grid, to_rows


@dataclass(frozen=True)
class Example:
    """One input -> output pair. `output` is None for a test input without a known solution."""

    input: Grid
    output: Grid | None = None

    def map(self, fn: Callable[[Grid], Grid]) -> Example:
        """The example with `fn` applied to every grid it has."""
        return Example(fn(self.input), None if self.output is None else fn(self.output))


@dataclass(frozen=True)
class Task:
    """An ARC task: demonstration pairs and one or more test examples."""

    id: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]

    @property
    def has_solutions(self) -> bool:
        """Whether every test output is known (so the task can be scored)."""
        return all(example.output is not None for example in self.test)

    def map(self, fn: Callable[[Grid], Grid]) -> Task:
        """The task with `fn` applied to every grid."""
        return Task(
            self.id,
            tuple(e.map(fn) for e in self.train),
            tuple(e.map(fn) for e in self.test),
        )

    def to_json(self) -> dict:
        """The task in ARC's JSON format (`{"train": [{"input", "output"}], "test": [...]}`; a test
        output only when known), which `ttt.arc.loading.parse_task` reads back."""

        def example(e: Example) -> dict:
            grids = {"input": to_rows(e.input)}
            if e.output is not None:
                grids["output"] = to_rows(e.output)
            return grids

        return {"train": [example(e) for e in self.train], "test": [example(e) for e in self.test]}
