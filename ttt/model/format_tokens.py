"""The tokens a text format's answers are written with, for a tokenizer (no model, no torch).

The decoder suppresses every other token and its answer head keeps only these rows of the LM head
(`ttt.inference.answer_head`); training may cut its loss's head to them too (`ttt.model.prefix_loss`,
`ttt.head=format`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ttt.arc.formats import TextFormat

# Characters an answer's grid may use; the end marker is allowed only as its own single token.
ALPHABETS = {"compact": "0123456789\n", "paper": "0123456789 []\n"}


def single_step(text: str, alphabet: str) -> bool:
    """Whether a token's text may be generated: only `alphabet` characters, and at most one cell
    (digit), one row break and one space, so a token never writes two cells or rows at once."""
    return (
        bool(text)
        and all(ch in alphabet for ch in text)
        and sum(ch.isdigit() for ch in text) <= 1
        and text.count("\n") <= 1
        and text.count(" ") <= 1
    )


def stop_token_ids(tokenizer: Any, text_format: TextFormat) -> list[int]:
    """EOS, then the end marker when it is one token (a longer one is stopped on by its text)."""
    end_ids = tokenizer(text_format.end_marker, add_special_tokens=False)["input_ids"]
    return [tokenizer.eos_token_id] + (end_ids if len(end_ids) == 1 else [])


@lru_cache(maxsize=8)
def answer_tokens(tokenizer: Any, alphabet: str, stop_ids: tuple[int, ...]) -> tuple[int, ...]:
    """The token ids an answer may use, ascending: the `single_step` ones of `alphabet` and the stops."""
    keep = set(stop_ids)
    for token_id in range(len(tokenizer)):
        if single_step(tokenizer.decode([token_id]), alphabet):
            keep.add(token_id)
    return tuple(sorted(keep))


def suppressed_tokens(tokenizer: Any, alphabet: str, stop_ids: tuple[int, ...], vocab_size: int) -> tuple[int, ...]:
    """Every token id but the `answer_tokens`."""
    keep = set(answer_tokens(tokenizer, alphabet, stop_ids))
    return tuple(i for i in range(vocab_size) if i not in keep)


def format_token_ids(tokenizer: Any, text_format: TextFormat) -> tuple[int, ...]:
    """`answer_tokens` of `text_format`: its alphabet's single-step tokens, EOS and its end marker."""
    return answer_tokens(tokenizer, ALPHABETS[text_format.name], tuple(stop_token_ids(tokenizer, text_format)))
