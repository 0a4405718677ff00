"""Teacher-forced scoring: the log-probability a model gives known answer tokens after a prompt.

The one scorer behind the held-out NLL (TTT, fine-tuning, a shipped adapter's card, prediction;
`ttt.inference.heldout`) and the rescoring selection rules (`inference.selection=poe|nvarc`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ttt.data.padding import pad
from ttt.model.lora import causal_lm

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]  # (prompt ids, answer ids)


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def answer_logprobs(
    model: Any, pairs: Pairs, pad_id: int, batch_size: int = 8
) -> list[float]:
    """Teacher-forced log p(answer | prompt) for each (prompt ids, answer ids) pair, batched."""
    return [sum(tokens) for tokens in answer_token_logprobs(model, pairs, pad_id, batch_size)]


@torch.inference_mode()
def answer_token_logprobs(
    model: Any, pairs: Pairs, pad_id: int, batch_size: int = 8
) -> list[list[float]]:
    """Teacher-forced log p(token | prompt, earlier answer tokens) of every answer token, per pair,
    normalised over the whole vocabulary. The LM head runs only on the positions that predict an
    answer token (a 5k-token prompt's full logits would be 1 GB in fp32): the same numbers."""
    model.eval()
    lm = causal_lm(model)
    device = next(model.parameters()).device
    results: list[list[float]] = [[] for _ in pairs]
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    for batch in _batches(order, batch_size):
        ids, mask = pad([list(pairs[i][0]) + list(pairs[i][1]) for i in batch], pad_id)
        hidden = lm.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        rows = [(len(pairs[i][0]) - 1, len(pairs[i][1])) for i in batch]  # logits at p predict token p + 1
        picked = torch.cat([hidden[r, start : start + n] for r, (start, n) in enumerate(rows)])
        targets = torch.cat([ids[r, start + 1 : start + 1 + n] for r, (start, n) in enumerate(rows)]).to(device)
        logprobs = lm.get_output_embeddings()(picked).float().log_softmax(-1)
        chosen = logprobs.gather(-1, targets[:, None]).squeeze(-1).tolist()
        for (start, n), index in zip(rows, batch):
            results[index], chosen = chosen[:n], chosen[n:]
    return results
