"""Batched greedy decoding of many prompts with the KV cache.

Prompts are token-id lists (from `ttt.data.tokenize.SegmentTokenizer`), sorted by length into
left-padded batches. Decoding stops at the format's end marker or EOS, after at most
`max_new_tokens` (default: the tokens of the largest possible 30x30 answer), or as soon as its
complete rows can no longer parse (ragged, over 30x30): such an answer is a lost vote however it
goes on, so stopping it early changes no result and saves most of a runaway decode. With
`restrict_alphabet`, every token whose text is not made of the format's characters is suppressed
(transformers' `suppress_tokens`), and so is every token that would write two cells, two row breaks
or a run of spaces at once (`\n\n` would silently collapse rows). Each answer keeps its
log-probability under the unrestricted model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ttt.arc.formats import TextFormat
from ttt.data.padding import pad
from ttt.model.format_tokens import ALPHABETS, stop_token_ids, suppressed_tokens


@dataclass(frozen=True)
class Generated:
    """A decoded answer: its text (through the end marker), summed log-probability, token count."""

    text: str
    logprob: float
    num_tokens: int


def largest_answer_tokens(tokenizer: Any, text_format: TextFormat) -> int:
    """Tokens of the longest possible answer: a 30x30 grid (digits of 8) plus the end marker."""
    grid = tuple(tuple([8] * 30) for _ in range(30))
    return len(tokenizer(text_format.output_text(grid), add_special_tokens=False)["input_ids"]) + 1


class HopelessAnswers(StoppingCriteria):
    """Ends each sequence whose answer so far can no longer parse (`TextFormat.hopeless`)."""

    def __init__(self, tokenizer: Any, text_format: TextFormat, prompt_width: int):
        self.tokenizer, self.format, self.prompt_width = tokenizer, text_format, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs) -> torch.BoolTensor:
        answers = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        return torch.tensor([self.format.hopeless(a) for a in answers], device=input_ids.device)


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


class Generator:
    """Greedy answers for token-id prompts, batched."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        text_format: TextFormat,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        restrict_alphabet: bool = True,
    ):
        self.model, self.tokenizer, self.format = model, tokenizer, text_format
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or largest_answer_tokens(tokenizer, text_format)
        self.stop_ids = stop_token_ids(tokenizer, text_format)
        self.stop_strings = None if len(self.stop_ids) > 1 else [text_format.end_marker]
        vocab_size = model.get_output_embeddings().weight.shape[0]
        self.suppress = None
        if restrict_alphabet:
            alphabet = ALPHABETS[text_format.name]
            self.suppress = list(suppressed_tokens(tokenizer, alphabet, tuple(self.stop_ids), vocab_size))

    @torch.inference_mode()
    def __call__(self, prompts: Sequence[Sequence[int]]) -> list[Generated]:
        self.model.eval()
        device = next(self.model.parameters()).device
        results: list[Generated | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        for batch in _batches(order, self.batch_size):
            ids, mask = (t.to(device) for t in pad([prompts[i] for i in batch], self.tokenizer.pad_token_id, left=True))
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=self.stop_ids,
                stop_strings=self.stop_strings,
                tokenizer=self.tokenizer if self.stop_strings else None,
                pad_token_id=self.tokenizer.pad_token_id,
                suppress_tokens=self.suppress,
                stopping_criteria=StoppingCriteriaList([HopelessAnswers(self.tokenizer, self.format, ids.shape[1])]),
                output_logits=True,
                return_dict_in_generate=True,
                temperature=None, top_p=None, top_k=None,
            )  # fmt: skip
            new = out.sequences[:, ids.shape[1] :]
            logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
            chosen = logprobs.gather(-1, new[:, : logprobs.shape[1], None]).squeeze(-1)
            for row, index in enumerate(batch):
                tokens = new[row].tolist()
                length = next((n + 1 for n, t in enumerate(tokens) if t in self.stop_ids), len(tokens))
                while length and tokens[length - 1] == self.tokenizer.pad_token_id:  # stopped as hopeless,
                    length -= 1  # then padded while the rest of the batch went on
                results[index] = Generated(
                    self.tokenizer.decode(tokens[:length], skip_special_tokens=True),
                    float(chosen[row, :length].sum()),
                    length,
                )
        return results  # type: ignore[return-value]
