"""The ARC decoder: greedy or threshold ("DFS") search over the answer tokens, from cached prompts,
and teacher-forced scoring of candidates from the same caches.

Every prompt is encoded once (`PromptCache`); decoding then feeds one token per branch per step
through the backbone and the reduced head (`AnswerHead`). A branch is a partial answer; each
step every live branch of every view is one row of a single batch:

- `greedy` keeps one branch per view: the most probable kept token at each step (the paper's
  decoding; the same answers as `transformers.generate` with the alphabet restricted).
- `dfs` keeps every continuation whose log-probability stays at or above a floor and returns every
  answer that ends above it (ARChitects 2024: depth-first search with a threshold; NVARC: p >= 0.2),
  and always the view's greedy answer besides, so no view comes back empty. The floor
  (`threshold`, `inference.dfs_threshold`) is one of:
  - `absolute`: p(answer) >= min_prob (the anchors' rule). A 100-token answer clears 0.1 only if
    its mean token NLL is below 0.023, so long answers rarely clear it;
  - `per_token`: p(answer) >= min_prob ** tokens, i.e. a geometric-mean token probability of at
    least min_prob, whatever the answer's length; a partial answer is held to the same rule;
  - `relative`: p(answer) >= min_prob * p(greedy answer of the view); a branch is compared with
    the view's greedy branch at the same length (the greedy answer's final probability is not
    known while it is still being decoded, so this is a little stricter than comparing with it).
  The branches are expanded level by level, all views in one batch, rather than one path at a
  time; the answers are the same set (below the `max_branches` cap), since it is fixed by the
  floor, not by the order of expansion. The width is bounded: `absolute` keeps at most 1 / min_prob live branches per view
  (disjoint prefixes of probability >= min_prob each); for all three at most `max_branches` per
  view are kept, the most probable (and the greedy one). A branch is dropped as soon as its
  partial answer can no longer parse (`TextFormat.hopeless`; given its view's expected shape,
  `inference.expected_shape=stop`, as soon as it can no longer have it) or passes `max_new_tokens`; at most
  `max_answers` answers per view are returned, the greedy one and then the most probable.

With `constrain_shape` (`ttt.inference.answer_shape`), tokens that would break the grid's shape
(a row wider or narrower than the first, a 31st row, an end in mid-row) are masked before either
search chooses, so every answer parses; kept tokens keep the model's log-probabilities.

The greedy branch is the one that took the most probable token at every step. Greedy (and dfs for
its greedy branch) returns it even when it stopped as hopeless or ran out of tokens, as an
unparseable answer, like `generate` did: a lost vote, counted.

The greedy answer is dfs's most probable answer whenever its probability is at least 1/2 (no other
answer can beat it). It need not be otherwise: the greedy first step can lead into a region where
mass spreads over many answers, while a less likely first step leads to one answer that clears the
floor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ttt.arc.formats import TextFormat
from ttt.data.padding import pad
from ttt.inference.answer_head import AnswerHead
from ttt.inference.answer_shape import Shape, ShapeGuard
from ttt.inference.generation import Generated, largest_answer_tokens
from ttt.inference.kv_cache import PromptCache, repeat, stack

Expected = tuple[int | None, int | None] | None  # an answer's (height, width) where known

DECODERS = ("greedy", "dfs", "generate")  # inference.decoder; generate: transformers' generate (the old path)
THRESHOLDS = ("absolute", "per_token", "relative")  # inference.dfs_threshold: what dfs_min_prob bounds
ENCODE_TOKENS = 8192  # under a deadline, prompt tokens encoded per pass between checks of the clock


@dataclass(frozen=True)
class Branch:
    """A partial answer of one view: its tokens (vocabulary ids), text and log-probability."""

    view: int
    tokens: tuple[int, ...]
    text: str
    logprob: float
    greedy: bool = False  # the most probable token at every step so far
    shape: Shape | None = None  # where the grid stands (`constrain_shape` only)


@dataclass(frozen=True)
class Floor:
    """The log-probability a branch must keep to live on (see the module docstring)."""

    kind: str  # "greedy" (nothing but the greedy branch) or one of THRESHOLDS
    log_min_prob: float = 0.0

    def __call__(self, length: int, greedy_logprob: float) -> float:
        """The floor for a partial answer of `length` tokens, given the view's greedy branch's
        log-probability at that length (or its final one, if it ended sooner)."""
        if self.kind == "absolute":
            return self.log_min_prob
        if self.kind == "per_token":
            return length * self.log_min_prob
        if self.kind == "relative":
            return greedy_logprob + self.log_min_prob
        return math.inf


class Decoder:
    """Greedy or threshold-search answers, and candidate scores, for token-id prompts."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        text_format: TextFormat,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        restrict_alphabet: bool = True,
        normalise: str = "alphabet",
        constrain_shape: bool = False,
    ):
        self.model, self.tokenizer, self.format = model, tokenizer, text_format
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or largest_answer_tokens(tokenizer, text_format)
        self.head = AnswerHead(model, tokenizer, text_format, restrict_alphabet, normalise)
        self.guard = (
            ShapeGuard(text_format.name, self.head.pieces, self.head.stops.tolist(), text_format.end_marker)
            if constrain_shape else None
        )  # fmt: skip
        self.prompts = PromptCache(model)
        self._shapes: list[Expected] = []  # per prompt of the current decode: its answer's expected shape
        self.cut_views = 0  # views of the last decode that its `until` cut short

    @torch.inference_mode()
    def greedy(
        self, prompts: Sequence[Sequence[int]], shapes: Sequence[Expected] | None = None, until: float | None = None
    ) -> list[Generated | None]:
        """One answer per prompt: the most probable token at every step. `shapes`: per prompt, the
        (height, width) its answer must have (`ttt.inference.expected_shape`), or None: any.
        `until`: a `time.monotonic()` past which decoding stops (run.deadline); a prompt it cut
        before its answer ended has None (`cut_views` counts them)."""
        found = self._decode(prompts, Floor("greedy"), max_answers=1, max_branches=1, shapes=shapes, until=until)
        return [answers[0] if answers else None for answers in found]

    @torch.inference_mode()
    def dfs(
        self,
        prompts: Sequence[Sequence[int]],
        min_prob: float,
        max_answers: int = 8,
        threshold: str = "absolute",
        max_branches: int = 32,
        keep_greedy: bool = True,
        shapes: Sequence[Expected] | None = None,
        until: float | None = None,
    ) -> list[list[Generated]]:
        """Per prompt, every answer above the `threshold` floor set by `min_prob` (at most
        `max_answers`, most probable first) and, with `keep_greedy`, its greedy answer; `shapes`
        and `until` as for `greedy` (a prompt cut short keeps the answers that had ended)."""
        if not 0 < min_prob <= 1:
            raise ValueError(f"inference.dfs_min_prob={min_prob}: must be in (0, 1]")
        if threshold not in THRESHOLDS:
            raise ValueError(f"inference.dfs_threshold={threshold!r}: choose one of {THRESHOLDS}")
        if threshold == "relative" and not keep_greedy:
            raise ValueError("dfs_threshold='relative' follows the greedy branch: keep_greedy must be true")
        floor = Floor(threshold, math.log(min_prob))
        return self._decode(prompts, floor, max_answers, max_branches, keep_greedy, shapes, until)

    def _decode(
        self, prompts, floor: Floor, max_answers: int, max_branches: int, keep_greedy: bool = True, shapes=None,
        until: float | None = None,
    ) -> list[list[Generated]]:
        self.model.eval()
        found: list[list[Branch]] = [[] for _ in prompts]
        self._shapes = list(shapes) if shapes is not None else [None] * len(prompts)  # read by _hopeless
        self.cut_views = 0
        for start in range(0, len(prompts), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(prompts)))
            if until is not None and time.monotonic() >= until:
                self.cut_views += len(chunk)
                continue
            self._search(prompts, chunk, floor, max_branches, keep_greedy, found, until)
        return [[self._generated(b) for b in _best(branches, max_answers)] for branches in found]

    def _search(self, prompts, views: range, floor: Floor, max_branches: int, keep_greedy: bool, found, until) -> None:
        """Expand the branches of `views` level by level, appending answers to `found`; past
        `until`, the views with a live branch are cut short (counted in `cut_views`)."""
        encoded = self._encode(prompts, views, until)
        if len(encoded) < len(views):  # out of time while encoding: the views left are cut short
            self.cut_views += len(views) - len(encoded)
            views = views[: len(encoded)]
            if not encoded:
                return
        cache, mask = stack(encoded)
        lengths = torch.tensor([e.length for e in encoded])
        hidden = torch.stack([e.last_hidden for e in encoded])
        start = self.guard.start if self.guard else None
        branches = [Branch(v, (), "", 0.0, keep_greedy, start) for v in views]
        rows = list(range(len(branches)))  # each branch's prompt row in `lengths`
        greedy_logprob = {v: 0.0 for v in views}  # the greedy branch's, at the current length
        for step in range(self.max_new_tokens):
            if until is not None and time.monotonic() >= until:
                self.cut_views += len({b.view for b in branches})
                return
            logprobs = self.head.logprobs(hidden).cpu()
            if self.guard:  # tokens that would break the grid's shape are never taken
                logprobs = logprobs.masked_fill(~self.guard.allowed([b.shape for b in branches]), -math.inf)
            best = logprobs.argmax(-1).tolist()
            for row, branch in enumerate(branches):
                if branch.greedy:
                    greedy_logprob[branch.view] = branch.logprob + float(logprobs[row, best[row]])
            kept: list[tuple[Branch, int]] = []  # (child, parent row)
            for row, branch in enumerate(branches):
                bar = floor(step + 1, greedy_logprob[branch.view])
                for index in self._children(logprobs[row], branch.logprob, bar):
                    is_greedy = branch.greedy and index == best[row]
                    kept += self._grow(branch, index, float(logprobs[row, index]), is_greedy, step, found, row)
                if branch.greedy and branch.logprob + float(logprobs[row, best[row]]) < bar:
                    kept += self._grow(branch, best[row], float(logprobs[row, best[row]]), True, step, found, row)
            kept = _widest(kept, max_branches)
            if not kept:
                return
            parents = [row for _, row in kept]
            if parents != list(range(len(branches))):  # a branch split or ended: rows follow the branches
                index = torch.tensor(parents, device=mask.device)
                cache.reorder_cache(index)
                mask = mask[index]
                rows = [rows[p] for p in parents]
            branches = [child for child, _ in kept]
            mask = torch.cat([mask, mask.new_ones(len(branches), 1)], dim=1)
            positions = (lengths[rows] + step)[:, None]
            ids = torch.tensor([b.tokens[-1] for b in branches], device=mask.device)[:, None]
            hidden = self.prompts.forward(ids, cache, mask, positions)[0][:, -1]

    def _encode(self, prompts, views: range, until: float | None) -> list:
        """The views' prompts encoded; under a deadline a few at a time (at most `ENCODE_TOKENS`
        tokens a pass, checking `until` between passes), so long prompts cannot overrun it by
        minutes: the encoded prefix of `views`. Without one, in batches of `batch_size` as always."""
        if until is None:
            return self.prompts.encode([prompts[v] for v in views], self.batch_size)
        passes, tokens = [[]], 0
        for v in views:  # consecutive views, at most ENCODE_TOKENS a pass (a longer prompt alone)
            if passes[-1] and tokens + len(prompts[v]) > ENCODE_TOKENS:
                passes.append([])
                tokens = 0
            passes[-1].append(prompts[v])
            tokens += len(prompts[v])
        encoded = []
        for batch in passes:
            if time.monotonic() >= until:
                break
            encoded += self.prompts.encode(batch, self.batch_size)
        return encoded

    def _grow(self, branch: Branch, index: int, logprob: float, greedy: bool, step: int, found, row: int):
        """The child of `branch` by kept-token `index`: an answer (appended to `found`), dropped,
        or returned as [(child, parent row)] to expand further."""
        child = Branch(
            branch.view, branch.tokens + (int(self.head.token_ids[index]),),
            branch.text + self.head.pieces[index], branch.logprob + logprob, greedy,
            self.guard.after(branch.shape, index) if self.guard else None,
        )  # fmt: skip
        if self.head.stops[index] or self.format.end_marker in child.text:
            found[child.view].append(child)
        elif self._hopeless(child) or step + 1 == self.max_new_tokens:
            if greedy:  # an answer that cannot parse, or unfinished, as generate returned it
                found[child.view].append(child)
        else:
            return [(child, row)]
        return []

    def _hopeless(self, branch: Branch) -> bool:
        """Whether the partial answer can no longer parse, or no longer have its view's expected
        shape. (A guarded answer always parses: the guard refused every token that would not.)"""
        expected = self._shapes[branch.view]
        if self.guard and expected is None:
            return False
        return self.format.hopeless(branch.text, expected)

    @staticmethod
    def _children(logprobs: torch.Tensor, so_far: float, floor: float) -> list[int]:
        """Kept-token indices of the continuations at or above `floor`, most probable first."""
        if so_far + float(logprobs.max()) < floor:
            return []
        order = torch.argsort(logprobs, descending=True)
        children = []
        for index in order.tolist():
            if so_far + float(logprobs[index]) < floor:
                break
            children.append(index)
        return children

    def _generated(self, branch: Branch) -> Generated:
        text = self.tokenizer.decode(list(branch.tokens), skip_special_tokens=True)
        return Generated(text, branch.logprob, len(branch.tokens))

    @torch.inference_mode()
    def token_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[list[float]]:
        """Teacher-forced log p(token | prompt, earlier answer tokens) of every answer token, per
        (prompt ids, answer ids) pair; each distinct prompt is encoded once (or taken from the cache
        decoding left) and its answers are scored together from a copy of its cache."""
        self.model.eval()
        results: list[list[float]] = [[] for _ in pairs]
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for number, (prompt, _) in enumerate(pairs):
            by_prompt.setdefault(tuple(prompt), []).append(number)
        self.prompts.encode(list(by_prompt), self.batch_size)  # those decoding did not leave
        for prompt, numbers in by_prompt.items():
            encoded = self.prompts(prompt)
            for start in range(0, len(numbers), self.batch_size):
                batch = numbers[start : start + self.batch_size]
                answers = [self.head.indices(pairs[n][1]) for n in batch]
                padded = pad(answers, 0)[0]  # padding after an answer is never read
                width = padded.shape[1]
                ids = self.head.token_ids[padded].to(self.prompts.device)
                mask = torch.ones(len(batch), encoded.length + width, dtype=torch.long)
                positions = (encoded.length + torch.arange(width))[None].expand(len(batch), -1)
                hidden = self.prompts.forward(ids, repeat(encoded, len(batch)), mask, positions)[0]
                before = torch.cat([encoded.last_hidden.expand(len(batch), 1, -1), hidden[:, :-1]], dim=1)
                logprobs = self.head.logprobs(before).gather(-1, padded[..., None].to(before.device)).squeeze(-1)
                for row, n in enumerate(batch):
                    results[n] = logprobs[row, : len(answers[row])].tolist()
        return results

    def score(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        """Teacher-forced log p(answer | prompt) per pair (see `token_logprobs`)."""
        return [sum(tokens) for tokens in self.token_logprobs(pairs)]

    def forget(self) -> None:
        """Drop the encoded prompts (call between tasks, and whenever the weights change)."""
        self.prompts.forget()


def _widest(kept: list[tuple[Branch, int]], max_branches: int) -> list[tuple[Branch, int]]:
    """At most `max_branches` live branches per view: the greedy one and the most probable; the
    rest keep their order (parents' rows ascending)."""
    by_view: dict[int, list[int]] = {}
    for position, (branch, _) in enumerate(kept):
        by_view.setdefault(branch.view, []).append(position)
    dropped = set()
    for positions in by_view.values():
        if len(positions) > max_branches:
            ranked = sorted(positions, key=lambda p: (not kept[p][0].greedy, -kept[p][0].logprob))
            dropped.update(ranked[max_branches:])
    return [item for position, item in enumerate(kept) if position not in dropped]


def _best(branches: list[Branch], max_answers: int) -> list[Branch]:
    """The `max_answers` most probable answers, most probable first, the greedy one always among them."""
    ranked = sorted(branches, key=lambda b: -b.logprob)
    chosen = ranked[:max_answers]
    greedy = next((b for b in ranked[max_answers:] if b.greedy), None)
    if greedy is not None:
        chosen[-1] = greedy
    return chosen
