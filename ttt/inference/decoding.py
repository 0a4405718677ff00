"""The ARC decoder: greedy or threshold ("DFS") search over the answer tokens, from cached prompts,
and teacher-forced scoring of candidates from the same caches.

Every prompt is encoded once (`PromptCache`); decoding then feeds one token per branch per step
through the backbone and the reduced head (`AnswerHead`). A branch is a partial answer; each
step every live branch of every view is one row of a single batch:

- `greedy` keeps one branch per view: the most probable kept token at each step (the paper's
  decoding; the same answers as `transformers.generate` with the alphabet restricted).
- `dfs` keeps every continuation whose cumulative probability stays at or above `min_prob` and
  returns every answer that ends above it (ARChitects 2024: depth-first search with a threshold;
  NVARC: p >= 0.2). The branches are expanded level by level, all views in one batch, rather
  than one path at a time; the answers are the same set, since it is fixed by the threshold, not
  by the order of expansion. The width is bounded: the live branches of a view are disjoint
  prefixes of probability >= min_prob each, so there are at most 1 / min_prob of them. A branch is
  dropped as soon as its partial answer can no longer parse (`TextFormat.hopeless`) or passes
  `max_new_tokens`; at most `max_answers` answers per view are kept, most probable first.

Greedy returns a branch that stopped as hopeless or ran out of tokens as its (unparseable)
answer, like `generate` did; dfs returns only finished answers, so a view may return none.

The greedy answer is among the dfs answers whenever its probability clears the threshold, and it
is dfs's most probable answer whenever its probability is at least 1/2 (no other answer can beat
it). It need not be otherwise: the greedy first step can lead into a region where mass spreads
over many answers, none above the threshold, while a less likely first step leads to one answer
that clears it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ttt.arc.formats import TextFormat
from ttt.data.padding import pad
from ttt.inference.answer_head import AnswerHead
from ttt.inference.generation import Generated, largest_answer_tokens
from ttt.inference.kv_cache import PromptCache, repeat, stack

DECODERS = ("greedy", "dfs", "generate")  # inference.decoder; generate: transformers' generate (the old path)


@dataclass(frozen=True)
class Branch:
    """A partial answer of one view: its tokens (vocabulary ids), text and log-probability."""

    view: int
    tokens: tuple[int, ...]
    text: str
    logprob: float


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
    ):
        self.model, self.tokenizer, self.format = model, tokenizer, text_format
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or largest_answer_tokens(tokenizer, text_format)
        self.head = AnswerHead(model, tokenizer, text_format, restrict_alphabet, normalise)
        self.prompts = PromptCache(model)

    @torch.inference_mode()
    def greedy(self, prompts: Sequence[Sequence[int]]) -> list[Generated]:
        """One answer per prompt: the most probable token at every step."""
        return [answers[0] for answers in self._decode(prompts, min_prob=None, max_answers=1)]

    @torch.inference_mode()
    def dfs(self, prompts: Sequence[Sequence[int]], min_prob: float, max_answers: int = 8) -> list[list[Generated]]:
        """Per prompt, every answer of probability >= `min_prob` (at most `max_answers`, best first)."""
        if not 0 < min_prob <= 1:
            raise ValueError(f"inference.dfs_min_prob={min_prob}: must be in (0, 1]")
        return self._decode(prompts, min_prob, max_answers)

    def _decode(self, prompts, min_prob: float | None, max_answers: int) -> list[list[Generated]]:
        self.model.eval()
        found: list[list[Branch]] = [[] for _ in prompts]
        for start in range(0, len(prompts), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(prompts)))
            self._search(prompts, chunk, min_prob, found)
        return [
            [self._generated(b) for b in sorted(branches, key=lambda b: -b.logprob)[:max_answers]]
            for branches in found
        ]

    def _search(self, prompts, views: range, min_prob: float | None, found: list[list[Branch]]) -> None:
        """Expand the branches of `views` level by level, appending answers to `found`."""
        encoded = self.prompts.encode([prompts[v] for v in views], self.batch_size)
        cache, mask = stack(encoded)
        lengths = torch.tensor([e.length for e in encoded])
        hidden = torch.stack([e.last_hidden for e in encoded])
        branches = [Branch(v, (), "", 0.0) for v in views]
        rows = list(range(len(branches)))  # each branch's prompt row in `lengths`
        floor = -math.inf if min_prob is None else math.log(min_prob)
        greedy = min_prob is None
        for step in range(self.max_new_tokens):
            logprobs = self.head.logprobs(hidden).cpu()
            kept, parents, tokens = [], [], []
            for row, branch in enumerate(branches):
                for index, logprob in self._children(logprobs[row], branch.logprob, floor, greedy):
                    child = Branch(
                        branch.view, branch.tokens + (int(self.head.token_ids[index]),),
                        branch.text + self.head.pieces[index], branch.logprob + logprob,
                    )  # fmt: skip
                    if self.head.stops[index] or self.format.end_marker in child.text:
                        found[child.view].append(child)
                    elif self.format.hopeless(child.text):
                        if greedy:  # an answer that cannot parse, as generate returned it
                            found[child.view].append(child)
                    elif step + 1 == self.max_new_tokens:
                        if greedy:  # out of tokens: returned unfinished
                            found[child.view].append(child)
                    else:
                        kept.append(child)
                        parents.append(row)
                        tokens.append(child.tokens[-1])
            if not kept:
                return
            if parents != list(range(len(branches))):  # a branch split or ended: rows follow the branches
                index = torch.tensor(parents, device=mask.device)
                cache.reorder_cache(index)
                mask = mask[index]
                rows = [rows[p] for p in parents]
            mask = torch.cat([mask, mask.new_ones(len(kept), 1)], dim=1)
            positions = (lengths[rows] + step)[:, None]
            ids = torch.tensor(tokens, device=mask.device)[:, None]
            hidden = self.prompts.forward(ids, cache, mask, positions)[0][:, -1]
            branches = kept

    @staticmethod
    def _children(logprobs: torch.Tensor, so_far: float, floor: float, greedy: bool) -> list[tuple[int, float]]:
        """(kept-token index, log-probability) of the continuations to expand, most probable first."""
        if greedy:
            best = int(logprobs.argmax())
            return [(best, float(logprobs[best]))]
        order = torch.argsort(logprobs, descending=True)
        children = []
        for index in order.tolist():
            logprob = float(logprobs[index])
            if so_far + logprob < floor:
                break
            children.append((index, logprob))
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
