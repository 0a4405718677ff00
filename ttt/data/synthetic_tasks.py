"""Synthetic TTT tasks built from one ARC task's demonstrations only (METHOD.md section 3).

Leave-one-out: each demonstration in turn is the target, the others its context (K tasks).
Leave-two-out tops up tasks with few of them (K(K-1) tasks, K-2 demonstrations each). Every task
is augmented by each configured augmenter (dropping any with a grid over 30x30), joined with the
un-augmented ones, given one extra copy with permuted colours and shuffled demonstrations, then
deduplicated and capped (uniformly, or keeping the `priority` augmenters' samples first). All
randomness comes from one generator seeded by (seed, task id), so a task's data never depends on
which other tasks run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ttt.arc.augmenters import PAPER_AUGMENTERS, Augmenter, build_augmenters
from ttt.arc.grid import fits
from ttt.arc.task import Example, Task
from ttt.arc.transforms import ColourPermutation


UNAUGMENTED = "none"  # the augmenter name of a sample made from the task as given


@dataclass(frozen=True)
class SyntheticTask:
    """A TTT training sample: in-context demonstrations and a target pair."""

    demonstrations: tuple[Example, ...]
    test: Example
    augmenter: str = field(default=UNAUGMENTED, compare=False)  # provenance, not identity


@dataclass(frozen=True)
class TTTDataConfig:
    """How a task's TTT data is generated (paper values as defaults)."""

    augmenters: tuple[str, ...] = PAPER_AUGMENTERS  # registry names; () = no transformations
    max_examples: int = 250  # Nmax: cap per task, topped up from leave-two-out below it
    mode: Literal["in_context", "direct"] = "in_context"  # direct: input->output, no demonstrations
    permute_colours: bool = True  # one extra copy per task: random colours (0 fixed), shuffled demos
    top_up: bool = True  # fill up to max_examples with leave-two-out tasks
    seed: int = 0
    # Augmenter names (UNAUGMENTED = un-augmented) whose samples the cap keeps before any other, so
    # size-changing augmenters cannot crowd out the views inference uses; () = a uniform draw (paper).
    priority: tuple[str, ...] = ()
    max_tokens: int | None = None  # the samples' tokens at most this (None: no budget, the paper)
    rule: Literal["project", "paper"] = "project"  # paper: the reference's rule (ttt.data.paper_ttt_data)


def leave_one_out(demonstrations: Sequence[Example]) -> list[SyntheticTask]:
    """K tasks: demonstration i is the target, the other K-1 (in order) its context."""
    demos = tuple(demonstrations)
    return [SyntheticTask(demos[:i] + demos[i + 1 :], demos[i]) for i in range(len(demos))]


def leave_two_out(demonstrations: Sequence[Example]) -> list[SyntheticTask]:
    """K(K-1) tasks: target i, demonstration j != i also left out, K-2 demonstrations of context."""
    demos = tuple(demonstrations)
    return [
        SyntheticTask(tuple(d for k, d in enumerate(demos) if k not in (i, j)), demos[i])
        for i in range(len(demos))
        for j in range(len(demos))
        if j != i
    ]


def direct(demonstrations: Sequence[Example]) -> list[SyntheticTask]:
    """The ablation without in-context learning: each demonstration alone, no context."""
    return [SyntheticTask((), d) for d in demonstrations]


def augment(
    tasks: Iterable[SyntheticTask], augmenters: Sequence[Augmenter], rng: random.Random
) -> list[SyntheticTask]:
    """Each task un-augmented and under every augmenter; augmented grids over 30x30 are dropped."""
    result = []
    for task in tasks:
        result.append(task)
        for augmenter in augmenters:
            examples = augmenter((*task.demonstrations, task.test), rng)
            if all(fits(e.input) and fits(e.output) for e in examples):
                result.append(SyntheticTask(examples[:-1], examples[-1], augmenter.name))
    return result


def with_permuted_copies(tasks: Iterable[SyntheticTask], rng: random.Random) -> list[SyntheticTask]:
    """Each task, then a copy with a random colour permutation and shuffled demonstrations."""
    result = []
    for task in tasks:
        colours = ColourPermutation.random(rng)
        demos = [d.map(colours) for d in task.demonstrations]
        rng.shuffle(demos)
        result += [task, SyntheticTask(tuple(demos), task.test.map(colours), task.augmenter + "+colours")]
    return result


def dedupe(tasks: Iterable[SyntheticTask]) -> list[SyntheticTask]:
    """Tasks in first-seen order without repeats (same demonstrations, order and target)."""
    return list(dict.fromkeys(tasks))


def build_ttt_tasks(
    task: Task,
    config: TTTDataConfig = TTTDataConfig(),
    keep: Callable[[SyntheticTask], bool] = lambda _: True,
    length: Callable[[SyntheticTask], int] = lambda _: 0,
) -> list[SyntheticTask]:
    """The TTT training set of one task. `keep` filters samples (e.g. too many tokens) before the
    caps; `length` is a sample's tokens, for `config.max_tokens`."""
    rng = random.Random(f"{config.seed}/{task.id}")
    augmenters = build_augmenters(config.augmenters)
    budget = _Budget(config.max_examples, config.max_tokens, length)

    def pipeline(base: list[SyntheticTask]) -> list[SyntheticTask]:
        tasks = augment(base, augmenters, rng)
        if config.permute_colours:
            tasks = with_permuted_copies(tasks, rng)
        return [t for t in dedupe(tasks) if keep(t)]

    demos = task.train
    samples = pipeline(direct(demos) if config.mode == "direct" else leave_one_out(demos))
    if len(samples) > config.max_examples or not budget.holds(samples):
        rng.shuffle(samples)
        if config.priority:  # stable: a random draw within the preferred samples, then the rest
            samples.sort(key=lambda t: t.augmenter.removesuffix("+colours") not in config.priority)
    samples = budget.take(samples)
    if budget.full or not (config.top_up and config.mode == "in_context" and len(demos) > 2):
        return samples
    seen = set(samples)
    extra = [t for t in pipeline(leave_two_out(demos)) if t not in seen]
    rng.shuffle(extra)
    return samples + budget.take(extra)


class _Budget:
    """What is left of the two caps (samples, tokens) while samples are taken in order."""

    def __init__(self, max_examples: int, max_tokens: int | None, length: Callable[[SyntheticTask], int]):
        self.examples, self.tokens, self.length = max_examples, max_tokens, length

    @property
    def full(self) -> bool:
        return self.examples <= 0 or (self.tokens is not None and self.tokens <= 0)

    def holds(self, samples: Sequence[SyntheticTask]) -> bool:
        return self.tokens is None or sum(map(self.length, samples)) <= self.tokens

    def take(self, samples: Sequence[SyntheticTask]) -> list[SyntheticTask]:
        """The samples, in order, that still fit; the caps shrink by what they use."""
        taken = []
        for sample in samples:
            if self.full:
                break
            tokens = self.length(sample) if self.tokens is not None else 0
            if self.tokens is not None and tokens > self.tokens:
                continue  # too long for what is left: a later, shorter sample may fit
            taken.append(sample)
            self.examples -= 1
            if self.tokens is not None:
                self.tokens -= tokens
        return taken
