"""Predict one task: views -> answers -> parse -> invert -> vote (or product of experts) -> attempts.

The answering step is a function from prompted views (view + token-id prompt) to `Generated`
answers, so the whole pipeline runs with a language model (`Generator` on the prompts) or with any
stand-in that knows the views (the tests' oracle).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ttt.arc.formats import TextFormat
from ttt.arc.grid import Grid
from ttt.arc.scoring import solved
from ttt.arc.task import Task
from ttt.arc.transforms import DIHEDRAL_NAMES
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.generation import Generated
from ttt.inference.views import PAPER_TRANSFORMS, View, make_views
from ttt.inference.voting import VOTING_RULES, Candidate, Prediction, attempts, vote
from ttt.knobs import MIN_SEQ_LEN, knob

SELECTIONS = ("vote", "poe")  # how the two attempts are chosen from the voted candidates

Score = Callable[[Sequence[tuple[Sequence[int], Sequence[int]]]], list[float]]


@dataclass(frozen=True)
class InferenceSettings:
    """Augmented inference, voting and selection (configs/inference/default.yaml; paper values).

    `max_seq_len` and `seed` are not inference keys: they come from `data.max_seq_len` and `seed`.
    """

    enabled: bool = True
    transforms: tuple[str, ...] = knob(PAPER_TRANSFORMS, choices=DIHEDRAL_NAMES)  # ("identity",): none
    permutations: int = knob(2, ge=1)  # demonstration orders per transform (paper: 2)
    leave_one_out: bool = False  # also every leave-one-out subset of the demonstrations
    colour_permutations: int = knob(0, ge=0)  # extra views per transform with random colours
    voting: str = knob("hierarchical", choices=VOTING_RULES)
    top_k: int = knob(3, ge=1)  # candidates kept per transform group (paper: 3)
    selection: str = knob("vote", choices=SELECTIONS)
    poe_views: int = knob(8, ge=1)  # views that score each candidate under poe
    poe_candidates: int = knob(8, ge=1)  # best-voted candidates rescored under poe
    batch_size: int = knob(8, ge=1)  # prompts decoded together
    max_new_tokens: int | None = knob(None, ge=1)  # None: the largest possible answer's tokens
    restrict_alphabet: bool = True
    max_seq_len: int = knob(8192, ge=MIN_SEQ_LEN)  # a longer prompt drops its last demonstration
    seed: int = 0

    def problems(self) -> list[str]:
        return [] if self.transforms else ["transforms=[]: name at least one (identity: no augmentation)"]


@dataclass
class PromptedView:
    """A view of one test input and its prompt's token ids."""

    view: View
    test_index: int
    prompt: list[int]


Answer = Callable[[Sequence[PromptedView]], list[Generated]]


def fit_prompt(
    task: Task, view: View, test_input: Grid, text_format: TextFormat, encoder: SegmentTokenizer, max_seq_len: int
) -> PromptedView | None:
    """The view's prompt ids, dropping its last demonstration until it fits (None: never fits)."""
    while True:
        segments = text_format.render(
            view.demonstrations(task), view.test_input(test_input), tokenizer=encoder.tokenizer
        )
        prompt = encoder.encode(segments).input_ids
        if len(prompt) <= max_seq_len:
            return PromptedView(view, -1, prompt)
        if not view.order:
            return None
        view = view.without_last_demonstration()


def _diverse(prompted: Sequence[PromptedView], count: int) -> list[PromptedView]:
    """Up to `count` prompted views, taking one per transform group before any second one."""
    by_round: dict[int, list[PromptedView]] = {}
    seen: dict[str, int] = {}
    for item in prompted:
        n = seen[item.view.group] = seen.get(item.view.group, -1) + 1
        by_round.setdefault(n, []).append(item)
    return [v for n in sorted(by_round) for v in by_round[n]][:count]


def predict_task(
    task: Task,
    answer: Answer,
    encoder: SegmentTokenizer,
    text_format: TextFormat,
    settings: InferenceSettings = InferenceSettings(),
    score: Score | None = None,
) -> dict:
    """Two attempts per test input, with candidates, diagnostics and (if solutions are known) scores."""
    started = time.perf_counter()
    prompted: list[PromptedView] = []
    for test_index, test in enumerate(task.test):
        views = make_views(
            task, test_index, settings.transforms, settings.permutations,
            settings.leave_one_out, settings.colour_permutations, settings.seed,
        )  # fmt: skip
        for view in views:
            fitted = fit_prompt(task, view, test.input, text_format, encoder, settings.max_seq_len)
            if fitted is not None:
                fitted.test_index = test_index
                prompted.append(fitted)
    answers = answer(prompted) if prompted else []

    tests = []
    for test_index, test in enumerate(task.test):
        mine = [(p, a) for p, a in zip(prompted, answers) if p.test_index == test_index]
        predictions = []
        for p, generated in mine:
            parsed = text_format.parse(generated.text)
            grid = p.view.transform.inverse()(parsed.grid) if parsed.ok else None
            predictions.append(Prediction(grid, p.view.group, p.view.name, generated.logprob))
        chosen, ranked = vote(predictions, test.input, settings.voting, settings.top_k)
        voted = chosen
        poe_scores: dict[Grid, float] = {}
        if settings.selection == "poe" and ranked and score is not None:
            poe_scores = _product_of_experts(
                ranked[: settings.poe_candidates], [p for p, _ in mine], text_format, encoder, settings, score,
            )  # fmt: skip
            best = sorted(ranked[: settings.poe_candidates], key=lambda c: -poe_scores[c.grid])
            chosen = attempts(best, test.input)
        tests.append(_test_result(chosen, voted, ranked, predictions, poe_scores, test.output))

    scored = task.has_solutions
    return {
        "task_id": task.id,
        "tests": tests,
        "score": sum(t["solved"] for t in tests) / len(tests) if scored else None,
        "vote_score": sum(t["vote_solved"] for t in tests) / len(tests) if scored else None,
        "all_solved": all(t["solved"] for t in tests) if scored else None,
        "oracle": sum(t["in_candidates"] for t in tests) / len(tests) if scored else None,
        "view_accuracy": sum(t["view_accuracy"] for t in tests) / len(tests) if scored else None,
        "num_views": len(prompted),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _product_of_experts(
    candidates: Sequence[Candidate], prompted: Sequence[PromptedView], text_format, encoder, settings, score
) -> dict[Grid, float]:
    """Each candidate's summed log-probability over `poe_views` diverse views (teacher-forced),
    reusing the prompts the views were answered with."""
    pairs, owners = [], []
    for fitted in _diverse(prompted, settings.poe_views):
        for candidate in candidates:
            answer_ids = encoder.ids(text_format.output_text(fitted.view.transform(candidate.grid)))
            pairs.append((fitted.prompt, answer_ids))
            owners.append(candidate.grid)
    totals = {c.grid: 0.0 for c in candidates}
    for grid, logprob in zip(owners, score(pairs) if pairs else []):
        totals[grid] += logprob
    return totals


def _test_result(chosen, voted, ranked, predictions, poe_scores, truth) -> dict:
    """One test input's attempts, the voted ones (differ under poe), candidates and diagnostics."""
    correct = [p.grid == truth for p in predictions] if truth is not None else []
    return {
        "attempts": [[list(row) for row in grid] for grid in chosen],
        "vote_attempts": [[list(row) for row in grid] for grid in voted],
        "candidates": [
            {
                "grid": [list(row) for row in c.grid],
                "votes": c.votes,
                "groups": c.groups,
                "best_logprob": None if math.isinf(c.best_logprob) else round(c.best_logprob, 4),
                "poe_logprob": round(poe_scores[c.grid], 4) if c.grid in poe_scores else None,
            }
            for c in ranked
        ],
        "num_predictions": len(predictions),
        "num_parsed": sum(p.grid is not None for p in predictions),
        "solved": solved(chosen, truth) if truth is not None else None,
        "vote_solved": solved(voted, truth) if truth is not None else None,
        "in_candidates": any(c.grid == truth for c in ranked) if truth is not None else None,
        "view_accuracy": sum(correct) / len(correct) if correct else (0.0 if truth is not None else None),
    }
