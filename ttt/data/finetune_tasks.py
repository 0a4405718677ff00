"""Fine-tuning samples from ARC training tasks (METHOD.md section 6), before any TTT.

A task's pairs (demonstrations and solved test pairs, or a generated RE-ARC pool) form its pool.
Copy 0 of a task is the task as given; every further copy shuffles the pool into demonstrations
and a target, then applies one of the training augmenters (geometric and size transforms) and,
with some probability, a colour permutation - each to the inputs, the outputs or both, which
still gives a consistent task. Copies are seeded by (seed, task id, copy index) alone.

Evaluation tasks must never be trained on: ARC-AGI-2's training split holds hundreds of ARC-AGI-1
evaluation tasks, and a few training tasks share grids with evaluation tasks, so
`exclude_evaluation` drops every training task that has an evaluation task's id or any of its grids.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, replace

from ttt.arc.augmenters import PAPER_AUGMENTERS, Augmenter, build_augmenters
from ttt.arc.grid import Grid, fits
from ttt.arc.task import Example, Task
from ttt.arc.transforms import ColourPermutation
from ttt.data.synthetic_tasks import UNAUGMENTED, SyntheticTask, dedupe

SIDES = ("both", "input", "output")


@dataclass(frozen=True)
class FinetuneDataConfig:
    """How fine-tuning samples are drawn from a training task."""

    copies: int = 8  # samples per task: the task as given + (copies - 1) augmented ones
    augmenters: tuple[str, ...] = PAPER_AUGMENTERS  # one drawn per augmented copy; () = none
    apply_to: tuple[str, ...] = SIDES  # which grids an augmentation maps: drawn per copy
    colour_probability: float = 0.5  # chance that an augmented copy also permutes colours (0 fixed)
    max_demonstrations: int = 10  # cap on demonstrations per sample (RE-ARC pools are large)
    seed: int = 0
    generated_copies: int | None = None  # samples per generated pool (`<id>@<source>`, ttt.data.rearc); None: copies
    generated_demonstrations: int | None = None  # demonstrations per sample of a generated pool; None: max_demonstrations

    def of(self, task_id: str) -> FinetuneDataConfig:
        """The settings a task's samples are drawn with: a generated pool's own, else these."""
        if not is_generated(task_id):
            return self
        return replace(
            self, copies=self.generated_copies or self.copies,
            max_demonstrations=self.generated_demonstrations or self.max_demonstrations,
        )  # fmt: skip


def is_generated(task_id: str) -> bool:
    """Whether a task is a generated example pool (`007bbfb7@rearc`), not an ARC task as published."""
    return "@" in task_id


def base_id(task_id: str) -> str:
    """The ARC task id a generated pool was drawn for (`007bbfb7@rearc` -> `007bbfb7`), or the id."""
    return task_id.split("@", 1)[0]


def task_pairs(task: Task) -> tuple[Example, ...]:
    """Every solved pair of a task: its demonstrations and the test pairs with known outputs."""
    return task.train + tuple(e for e in task.test if e.output is not None)


def task_grids(task: Task) -> Iterator[Grid]:
    for example in task.train + task.test:
        yield example.input
        if example.output is not None:
            yield example.output


def evaluation_grids(evaluation: Iterable[Task]) -> frozenset[Grid]:
    return frozenset(g for t in evaluation for g in task_grids(t))


def exclude_evaluation(
    tasks: Iterable[Task], evaluation_ids: Set[str], grids: Set[Grid]
) -> tuple[list[Task], list[str]]:
    """`tasks` once per id, without any that has (or, a generated pool, was drawn for) an evaluation
    task's id or has one of its `grids` (`evaluation_grids`); also the ids dropped for leaking."""
    kept: dict[str, Task] = {}
    dropped: dict[str, None] = {}
    for task in tasks:
        if base_id(task.id) in evaluation_ids or any(g in grids for g in task_grids(task)):
            dropped[task.id] = None
        else:
            kept.setdefault(task.id, task)  # ARC-AGI-2 training repeats ARC-AGI-1 training tasks
    return list(kept.values()), list(dropped)


def on_side(augment, examples: Sequence[Example], side: str) -> tuple[Example, ...]:
    """`augment` (a map of example tuples) applied to the inputs, the outputs or both."""
    if side == "both":
        return augment(tuple(examples))
    if side == "input":
        inputs = augment(tuple(Example(e.input) for e in examples))
        return tuple(Example(new.input, old.output) for new, old in zip(inputs, examples))
    if side == "output":
        outputs = augment(tuple(Example(e.output) for e in examples))
        return tuple(Example(old.input, new.input) for new, old in zip(outputs, examples))
    raise ValueError(f"unknown side {side!r}; choose one of {SIDES}")


def augmented_copy(
    pairs: Sequence[Example],
    augmenters: Sequence[Augmenter],
    config: FinetuneDataConfig,
    rng: random.Random,
) -> SyntheticTask:
    """Shuffled pairs -> demonstrations + target, then a random augmentation and colours."""
    order = list(pairs)
    rng.shuffle(order)
    examples = tuple(order[: config.max_demonstrations + 1])
    names = []
    if augmenters:
        augmenter, side = rng.choice(augmenters), rng.choice(config.apply_to)
        candidate = on_side(lambda ex: augmenter(ex, rng), examples, side)
        if all(fits(e.input) and fits(e.output) for e in candidate):  # else keep it un-augmented
            examples, names = candidate, [f"{augmenter.name}@{side}"]
    if rng.random() < config.colour_probability:
        colours, side = ColourPermutation.random(rng), rng.choice(config.apply_to)
        examples = on_side(lambda ex: tuple(e.map(colours) for e in ex), examples, side)
        names.append(f"colours@{side}")
    return SyntheticTask(examples[1:], examples[0], "+".join(names) or UNAUGMENTED)


def finetune_samples(task: Task, config: FinetuneDataConfig = FinetuneDataConfig()) -> list[SyntheticTask]:
    """Up to `config.copies` distinct samples of one training task (fewer if copies coincide); a
    generated pool's with its own copies and demonstrations (`FinetuneDataConfig.of`)."""
    config = config.of(task.id)
    pairs = task_pairs(task)
    if len(pairs) < 2:
        return []
    augmenters = build_augmenters(config.augmenters)
    solved_tests = [e for e in task.test if e.output is not None]
    if solved_tests:  # copy 0: the task as given, its first test pair the target
        first = SyntheticTask(task.train[: config.max_demonstrations], solved_tests[0])
    else:  # a generated pool: its first pair the target, the next ones its demonstrations
        first = SyntheticTask(pairs[1 : config.max_demonstrations + 1], pairs[0])
    samples = [first]
    for copy in range(1, config.copies):
        rng = random.Random(f"{config.seed}/{task.id}/{copy}")
        samples.append(augmented_copy(pairs, augmenters, config, rng))
    return dedupe(samples)
