"""The LM head cut to the tokens an answer can be written with.

An answer in a text format uses a dozen or two tokens (compact: ten digits, newline, end marker,
EOS = 13 with the embedded tokenizer), out of a vocabulary of tens of thousands. `AnswerHead`
keeps only those rows of the output projection, so decoding and scoring compute a `hidden x 13`
product instead of `hidden x 49152`, and never materialise full-vocabulary logits.

Log-probabilities are normalised over the kept tokens (`alphabet`, what the ARChitects and NVARC
do by shrinking the vocabulary) or, as an option, over the whole vocabulary (`vocabulary`: the
score `transformers.generate` reports, comparable with runs made before this head; it computes the
full logits' log-sum-exp, so it is slower). Greedy choices are the same under both: the argmax
over the kept tokens does not depend on the normaliser.

The kept tokens are the format's single-step tokens (`generation.single_step`: format characters
only, at most one cell, row break or space each) plus EOS and the end marker when it is one token;
with `restrict_alphabet=False`, every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ttt.arc.formats import TextFormat
from ttt.model.format_tokens import ALPHABETS, answer_tokens, stop_token_ids
from ttt.model.lora import causal_lm

NORMALISATIONS = ("alphabet", "vocabulary")  # inference.normalise


class AnswerHead:
    """Log-probabilities of the answer tokens from the backbone's final hidden states."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        text_format: TextFormat,
        restrict_alphabet: bool = True,
        normalise: str = "alphabet",
    ):
        if normalise not in NORMALISATIONS:
            raise ValueError(f"inference.normalise={normalise!r}: choose one of {NORMALISATIONS}")
        self.normalise = normalise
        self.head = causal_lm(model).get_output_embeddings()
        stop_ids = stop_token_ids(tokenizer, text_format)
        if restrict_alphabet:
            ids = list(answer_tokens(tokenizer, ALPHABETS[text_format.name], tuple(stop_ids)))
        else:
            ids = list(range(self.head.weight.shape[0]))
        self.token_ids = torch.tensor(ids)  # reduced index -> vocabulary id
        self.position = {token_id: index for index, token_id in enumerate(ids)}  # vocabulary id -> reduced index
        self.pieces = [tokenizer.decode([i]) for i in ids]  # each kept token's text
        self.stops = torch.tensor([i in stop_ids for i in ids])  # which kept tokens end an answer
        self._weight: tuple[tuple, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def weight(self) -> torch.Tensor:
        """The kept rows of the output projection, sliced again only when the weights change."""
        full = self.head.weight
        key = (full.device, full.data_ptr(), full._version)
        if self._weight is None or self._weight[0] != key:
            self._weight = (key, full.detach()[self.token_ids.to(full.device)])
        return self._weight[1]

    def logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., kept tokens) float32 log-probabilities."""
        logits = torch.nn.functional.linear(hidden, self.weight).float()
        if getattr(self.head, "bias", None) is not None:
            logits = logits + self.head.bias.detach()[self.token_ids.to(logits.device)].float()
        if self.normalise == "alphabet":
            return logits.log_softmax(-1)
        full = self.head(hidden).float()  # the whole vocabulary: only for its normaliser
        return logits - full.logsumexp(-1, keepdim=True)

    def indices(self, token_ids: Sequence[int]) -> list[int]:
        """Reduced indices of vocabulary ids; a token outside the kept set cannot be scored."""
        missing = [t for t in token_ids if t not in self.position]
        if missing:
            raise ValueError(
                f"answer tokens {missing} are not answer tokens of this format (kept: {self.pieces}); "
                "use inference.restrict_alphabet=false to score with the whole vocabulary"
            )
        return [self.position[t] for t in token_ids]
