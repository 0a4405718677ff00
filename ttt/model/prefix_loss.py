"""The prefix (demonstration) loss of a batch, with the LM head run only where a label is.

A causal LM's own loss (`model(labels=...)`) computes logits at every position: a `tokens x
vocabulary` product, its float copy, a log-softmax and their gradients (the embedded model: 49,152
entries a position, a fifth of the step's matmul FLOPs; one 5.4k-token sample's fp32 logits alone
are 1 GB), though the labels (`ttt.data.tokenize`) cover only the outputs that carry loss. Here the
backbone runs as usual, and the head only on the hidden states whose next token is labelled. The
loss is the same function, the mean cross-entropy over the labelled tokens of the batch, with
logits upcast to float as transformers does: the same value and gradients up to float rounding
(`logits="all"` computes it the transformers way, for comparison).

`head="format"` (an option, not the paper's) also cuts the head to the tokens an answer is
written with (`token_ids`: the decoder's answer head, 13 for `compact`), so the softmax runs over
those alone: a different objective (no probability is pushed off the rest of the vocabulary),
whose held-out NLL `ttt.inference.heldout` still measures over the whole vocabulary.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ttt.arc.formats import TextFormat
from ttt.data.tokenize import IGNORE_INDEX
from ttt.model.format_tokens import format_token_ids
from ttt.model.lora import causal_lm
from ttt.model.packed_attention import packed_attention

LOGITS = ("labelled", "all")  # ttt.logits / finetune.logits: where the head runs
HEADS = ("full", "format")  # ttt.head / finetune.head: which tokens it scores
COMPILED: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()  # decoder -> compiled twin


class PrefixLoss:
    """`loss(model, batch)`: mean cross-entropy of the labelled tokens of a right-padded batch
    (`input_ids`, `attention_mask`, `labels`; `position_ids` for packed rows, see `ttt.data.datamodule.collate`)."""

    def __init__(
        self, logits: str = "labelled", head: str = "full", token_ids: Sequence[int] | None = None, compile: bool = False
    ):
        if logits not in LOGITS:
            raise ValueError(f"logits={logits!r}: choose one of {LOGITS}")
        if head not in HEADS:
            raise ValueError(f"head={head!r}: choose one of {HEADS}")
        if head == "format" and (logits != "labelled" or not token_ids):
            raise ValueError("head=format needs logits=labelled and the format's token ids")
        self.logits, self.head, self.compile = logits, head, compile
        self.token_ids = torch.tensor(sorted(token_ids)) if token_ids else None

    @classmethod
    def of(cls, logits: str, head: str, tokenizer: Any, text_format: TextFormat, compile: bool = False) -> PrefixLoss:
        """The loss a run's `logits`, `head` and `compile` settings ask for, for `text_format`'s tokens."""
        return cls(logits, head, format_token_ids(tokenizer, text_format) if head == "format" else None, compile)

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if batch.get(k) is not None}
        inputs["use_cache"] = False  # no KV cache in training (and transformers detects packed rows only without one)
        lm = causal_lm(model)
        packed = "position_ids" in inputs and "attention_mask" not in inputs
        with packed_attention(lm) if packed else contextlib.nullcontext():
            if self.logits == "all":
                return model(**inputs, labels=batch["labels"]).loss
            hidden = self._backbone(lm.get_decoder())(**inputs).last_hidden_state
        targets = batch["labels"][:, 1:]  # position p predicts token p + 1
        where = targets != IGNORE_INDEX
        hidden, targets = hidden[:, :-1][where], targets[where]
        head = lm.get_output_embeddings()
        if self.head == "full":
            return F.cross_entropy(head(hidden).float(), targets)
        return F.cross_entropy(self._format_logits(head, hidden).float(), self._reduced(targets))

    def _backbone(self, decoder: torch.nn.Module) -> Any:
        """The decoder, or with `compile` its `torch.compile`d twin (same weights; dynamic shapes, so
        samples of every length share one compiled graph). Only training calls the twin: inference
        and scoring run the decoder as it is."""
        if not self.compile:
            return decoder
        if decoder not in COMPILED:  # one twin per decoder for the process: every task's fit reuses its graph
            COMPILED[decoder] = torch.compile(decoder, dynamic=True)
        return COMPILED[decoder]

    def _format_logits(self, head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        if hasattr(head, "base_layer"):
            raise ValueError("head=format cannot train a LoRA on the LM head: drop lm_head from the LoRA target modules")
        ids = self.token_ids.to(hidden.device)
        bias = None if getattr(head, "bias", None) is None else head.bias[ids]
        return F.linear(hidden, head.weight[ids], bias)

    def _reduced(self, targets: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids -> indices into the kept tokens; a labelled token outside them is refused."""
        ids = self.token_ids.to(targets.device)
        index = torch.searchsorted(ids, targets).clamp(max=len(ids) - 1)
        if not bool((ids[index] == targets).all()):
            missing = sorted(set(targets[ids[index] != targets].tolist()))
            raise ValueError(
                f"head=format: labelled tokens {missing[:10]} are not among the format's {len(ids)} answer tokens "
                "(labels=paper labels chat tokens too): use head=full"
            )
        return index
