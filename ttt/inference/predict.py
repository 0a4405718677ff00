"""Predict one task: views -> answers -> parse -> invert -> vote (or rescore) -> attempts.

The answering step is a function from prompted views (view + token-id prompt) to each view's
`Generated` answers (one under greedy decoding, any number under dfs), so the whole pipeline runs
with a language model (`Decoder` on the prompts) or with any stand-in that knows the views (the
tests' oracle).

Selection of the two attempts from the pooled candidates of all views (`inference.selection`):
- `vote`: the paper's (hierarchical) vote, `ttt.inference.voting`;
- `poe`: product of experts: the best-voted `poe_candidates` are scored by teacher forcing under
  `poe_views` views, and ranked by the sum of those log-probabilities (ARChitects);
- `nvarc`: the same candidates ranked by how many views found them, then by their mean
  log-probability over the scoring views (NVARC);
- `confidence`: every candidate ranked by the highest log-probability one view gave it when it
  generated it (then votes): no extra scoring. The summed log-probability favours smaller grids.
Each test records the attempts every computable rule would have chosen (`attempts_by_rule`), so one
run compares them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ttt.arc.formats import TextFormat
from ttt.arc.grid import Grid, to_rows
from ttt.arc.scoring import solved
from ttt.arc.task import Task
from ttt.arc.transforms import DIHEDRAL_NAMES
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.answer_head import NORMALISATIONS
from ttt.inference.decoding import DECODERS, THRESHOLDS, Expected
from ttt.inference.expected_shape import EXPECTED_SHAPE_MODES, expected_shape
from ttt.inference.generation import Generated
from ttt.inference.inference_weights import INFERENCE_DTYPES
from ttt.inference.views import PAPER_TRANSFORMS, View, make_paper_views, make_views
from ttt.inference.candidates import Candidate, Prediction
from ttt.inference.voting import VOTING_RULES, attempts, vote
from ttt.knobs import MIN_SEQ_LEN, knob
from ttt.selection_rules import RESCORED, SELECTIONS

VIEW_LAYOUTS = ("project", "paper")  # inference.views

Score = Callable[[Sequence[tuple[Sequence[int], Sequence[int]]]], list[float]]


@dataclass(frozen=True)
class InferenceSettings:
    """Augmented inference, voting and selection (configs/inference/default.yaml; paper values).

    `max_seq_len` and `seed` are not inference keys: they come from `data.max_seq_len` and `seed`.
    """

    enabled: bool = True
    views: str = knob("project", choices=VIEW_LAYOUTS)  # project: transforms x orders | paper: the reference's layout
    include_n: int = knob(1, ge=0)  # views=paper: demonstrations left out per view (1 after TTT, 0 without)
    permute_n: int = knob(2, ge=0)  # views=paper: random orders besides the given one per subset
    transforms: tuple[str, ...] = knob(PAPER_TRANSFORMS, choices=DIHEDRAL_NAMES)  # ("identity",): none
    permutations: int = knob(2, ge=1)  # demonstration orders per transform (paper: 2)
    leave_one_out: bool = False  # also every leave-one-out subset of the demonstrations
    colour_permutations: int = knob(0, ge=0)  # extra views per transform with random colours
    voting: str = knob("hierarchical", choices=VOTING_RULES)
    top_k: int = knob(3, ge=1)  # candidates kept per transform group (paper: 3)
    selection: str = knob("vote", choices=SELECTIONS)
    poe_views: int = knob(8, ge=1)  # views that score each candidate under poe / nvarc
    poe_candidates: int = knob(8, ge=1)  # best-voted candidates rescored under poe / nvarc
    decoder: str = knob("greedy", choices=DECODERS)  # greedy (paper) | dfs | generate (transformers')
    dfs_min_prob: float = knob(0.1, gt=0, le=1)  # dfs: answers (and branches) below it are dropped
    dfs_threshold: str = knob("absolute", choices=THRESHOLDS)  # what dfs_min_prob bounds (ttt.inference.decoding)
    dfs_max_answers: int = knob(8, ge=1)  # dfs: most probable answers kept per view (the greedy one always)
    dfs_max_branches: int = knob(32, ge=1)  # dfs: live partial answers per view, the most probable
    dfs_keep_greedy: bool = True  # dfs: every view also returns its greedy answer (false: the floor alone)
    normalise: str = knob("alphabet", choices=NORMALISATIONS)  # log-probs over the answer tokens | vocabulary
    merge_lora: bool = True  # decode with the LoRA update merged into the weights (restored after)
    dtype: str | None = knob(None, choices=INFERENCE_DTYPES)  # weights to decode in; None: the model's
    batch_size: int = knob(8, ge=1)  # prompts decoded together
    max_new_tokens: int | None = knob(None, ge=1)  # None: the largest possible answer's tokens
    restrict_alphabet: bool = True
    constrain_shape: bool = False  # greedy/dfs only take tokens that keep the answer a well-formed grid
    expected_shape: str = knob("any", choices=EXPECTED_SHAPE_MODES)  # stop: an answer ends once it can't have the demonstrations' shape
    max_seconds: float | None = knob(None, gt=0)  # a task's decoding stops after this (its finished views kept); None: unbounded (paper)
    max_seq_len: int = knob(8192, ge=MIN_SEQ_LEN)  # a longer prompt drops its last demonstration
    seed: int = 0

    def problems(self) -> list[str]:
        problems = [] if self.transforms else ["transforms=[]: name at least one (identity: no augmentation)"]
        if self.dfs_threshold == "relative" and not self.dfs_keep_greedy:
            problems.append("dfs_threshold='relative' follows each view's greedy answer: needs dfs_keep_greedy=true")
        if self.constrain_shape and self.decoder == "generate":
            problems.append("constrain_shape=true is a mask of the greedy and dfs decoders: decoder=generate needs constrain_shape=false")
        if self.expected_shape != "any" and self.decoder == "generate":
            problems.append(f"expected_shape={self.expected_shape!r} stops answers in the greedy and dfs decoders: decoder=generate needs expected_shape=any")
        if self.max_seconds is not None and self.decoder == "generate":
            problems.append(f"max_seconds={self.max_seconds} bounds the greedy and dfs decoders: decoder=generate needs max_seconds=null")
        return problems


@dataclass
class PromptedView:
    """A view of one test input and its prompt's token ids."""

    view: View
    test_index: int
    prompt: list[int]
    shape: Expected = None  # the answer's (height, width) in the view's orientation, where known (expected_shape=stop)


Answer = Callable[[Sequence[PromptedView]], list[list[Generated]]]  # each view's answers


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


def paper_prompts(
    task: Task, test_index: int, text_format: TextFormat, encoder: SegmentTokenizer, settings: InferenceSettings
) -> list[PromptedView]:
    """The reference's views (`make_paper_views`) whose prompt with an answer is under
    `max_seq_len` tokens; when none is, the views with one more demonstration left out (the
    reference's fallback). A view that does not fit is dropped, not shortened.

    The answer is the true test output when the task has solutions, else the test input: the
    reference loads the solutions file before it makes views, so the answer's size decides which
    views it keeps (a quirk, reproduced: without solutions it uses the input, as here).
    """
    test = task.test[test_index]
    answer = test.output if task.has_solutions else test.input
    for include_n in (settings.include_n, settings.include_n + 1):
        fitted = []
        for view in make_paper_views(task, test_index, include_n, settings.permute_n, settings.seed):
            demos, shown = view.demonstrations(task), view.test_input(test.input)
            whole = text_format.render(demos, shown, view.test_input(answer), tokenizer=encoder.tokenizer)
            if len(encoder.encode(whole)) < settings.max_seq_len:
                prompt = encoder.encode(text_format.render(demos, shown, tokenizer=encoder.tokenizer)).input_ids
                fitted.append(PromptedView(view, test_index, prompt))
        if fitted:
            return fitted
    return []


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
    dropped = {"demonstrations": 0, "views": 0}  # what did not fit max_seq_len
    for test_index, test in enumerate(task.test):
        if settings.views == "paper":
            prompted += paper_prompts(task, test_index, text_format, encoder, settings)
            continue
        views = make_views(
            task, test_index, settings.transforms, settings.permutations,
            settings.leave_one_out, settings.colour_permutations, settings.seed,
        )  # fmt: skip
        for view in views:
            fitted = fit_prompt(task, view, test.input, text_format, encoder, settings.max_seq_len)
            if fitted is None:
                dropped["views"] += 1
                continue
            fitted.test_index = test_index
            dropped["demonstrations"] += len(view.order) - len(fitted.view.order)
            prompted.append(fitted)
    if settings.expected_shape == "stop":
        for p in prompted:
            demonstrations = [e.map(p.view.transform) for e in task.train]
            p.shape = expected_shape(demonstrations, p.view.test_input(task.test[p.test_index].input))
    answers = answer(prompted) if prompted else []

    tests = []
    for test_index, test in enumerate(task.test):
        mine = [(p, a) for p, a in zip(prompted, answers) if p.test_index == test_index]
        predictions = [prediction for p, generated in mine for prediction in _predictions(p, generated, text_format)]
        voted, ranked = vote(predictions, test.input, settings.voting, settings.top_k)
        confident = sorted(ranked, key=lambda c: (-c.best_logprob, -c.votes, c.first_seen))
        by_rule = {"vote": voted, "confidence": attempts(confident, test.input)}
        poe_scores: dict[Grid, float] = {}
        if settings.selection in RESCORED and score is not None:  # no candidates: the fallback attempts
            rescored = ranked[: settings.poe_candidates]
            views = [p for p, _ in mine]
            poe_scores, scorers = _product_of_experts(rescored, views, text_format, encoder, settings, score)
            poe_rank = sorted(rescored, key=lambda c: -poe_scores[c.grid])
            nvarc_rank = sorted(rescored, key=lambda c: (-c.votes, -poe_scores[c.grid] / scorers))
            by_rule["poe"], by_rule["nvarc"] = attempts(poe_rank, test.input), attempts(nvarc_rank, test.input)
        chosen = by_rule.get(settings.selection, voted)
        tests.append(_test_result(chosen, by_rule, ranked, predictions, poe_scores, test.output, len(mine)))

    scored = task.has_solutions
    rules = [rule for rule in SELECTIONS if all(rule in t["solved_by_rule"] for t in tests)] if scored else []
    return {
        "task_id": task.id,
        "tests": tests,
        "score": sum(t["solved"] for t in tests) / len(tests) if scored else None,
        "vote_score": sum(t["vote_solved"] for t in tests) / len(tests) if scored else None,
        "score_by_rule": {r: sum(t["solved_by_rule"][r] for t in tests) / len(tests) for r in rules} if scored else None,
        "all_solved": all(t["solved"] for t in tests) if scored else None,
        "oracle": sum(t["in_candidates"] for t in tests) / len(tests) if scored else None,
        "view_accuracy": sum(t["view_accuracy"] for t in tests) / len(tests) if scored else None,
        "num_views": len(prompted),
        "demonstrations_dropped": dropped["demonstrations"],  # from views whose prompt was over max_seq_len
        "views_dropped": dropped["views"],  # views that did not fit even with no demonstration
        "answers_per_view": round(sum(len(a) for a in answers) / len(prompted), 3) if prompted else 0.0,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _predictions(prompted: PromptedView, generated: Sequence[Generated], text_format: TextFormat) -> list[Prediction]:
    """A view's answers as predictions in the original orientation: one per distinct grid (answers
    that parse to the same grid add their probabilities); each unparseable answer a lost vote."""
    view = prompted.view
    by_grid: dict[Grid, float] = {}
    lost = 0
    for answer in generated:
        parsed = text_format.parse(answer.text)
        if not parsed.ok:
            lost += 1
            continue
        grid = view.transform.inverse()(parsed.grid)
        by_grid[grid] = _log_add(by_grid[grid], answer.logprob) if grid in by_grid else answer.logprob
    return [Prediction(g, view.group, view.name, lp) for g, lp in by_grid.items()] + [
        Prediction(None, view.group, view.name)
    ] * lost


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b))."""
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _product_of_experts(
    candidates: Sequence[Candidate], prompted: Sequence[PromptedView], text_format, encoder, settings, score
) -> tuple[dict[Grid, float], int]:
    """Each candidate's summed log-probability over `poe_views` diverse views (teacher-forced),
    reusing the prompts the views were answered with; and the number of views that scored."""
    pairs, owners = [], []
    scorers = _diverse(prompted, settings.poe_views)
    for fitted in scorers:
        for candidate in candidates:
            answer_ids = encoder.ids(text_format.output_text(fitted.view.transform(candidate.grid)))
            pairs.append((fitted.prompt, answer_ids))
            owners.append(candidate.grid)
    totals = {c.grid: 0.0 for c in candidates}
    for grid, logprob in zip(owners, score(pairs) if pairs else []):
        totals[grid] += logprob
    return totals, max(len(scorers), 1)


def _test_result(chosen, by_rule, ranked, predictions, poe_scores, truth, num_views) -> dict:
    """One test input's attempts, every rule's attempts, candidates and diagnostics."""
    correct = [p.grid == truth for p in predictions] if truth is not None else []
    as_lists = lambda grids: [to_rows(grid) for grid in grids]  # noqa: E731
    return {
        "attempts": as_lists(chosen),
        "vote_attempts": as_lists(by_rule["vote"]),
        "attempts_by_rule": {rule: as_lists(grids) for rule, grids in by_rule.items()},
        "candidates": [
            {
                "grid": to_rows(c.grid),
                "votes": c.votes,
                "groups": c.groups,
                "best_logprob": None if math.isinf(c.best_logprob) else round(c.best_logprob, 4),
                "poe_logprob": round(poe_scores[c.grid], 4) if c.grid in poe_scores else None,
            }
            for c in ranked
        ],
        "num_views": num_views,
        "num_predictions": len(predictions),
        "num_parsed": sum(p.grid is not None for p in predictions),
        "solved": solved(chosen, truth) if truth is not None else None,
        "vote_solved": solved(by_rule["vote"], truth) if truth is not None else None,
        "solved_by_rule": {r: solved(g, truth) for r, g in by_rule.items()} if truth is not None else {},
        "in_candidates": any(c.grid == truth for c in ranked) if truth is not None else None,
        "view_accuracy": sum(correct) / len(correct) if correct else (0.0 if truth is not None else None),
    }
