"""A LoRA adapter that approximates a fine-tuned model's difference from its base model: each
linear layer's (and the token embedding's) weight difference cut to its best rank-R approximation
(truncated SVD), the RMSNorm weights stored whole (PEFT `modules_to_save`: a few thousand numbers).
A full fine-tune of the embedded model is 270 MB in bf16; this keeps it within the repository's
size limit for shipped weights and loads through `model.adapter` like any PEFT adapter
(`ttt.ship_adapter --rank R`; experiments/finetune_long.md measures what each rank keeps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper

EMBEDDING = "embed_tokens"
OUTPUT = "lm_head"
NORMS = "norm"  # matches every RMSNorm of a Llama model by name ending: input_layernorm, post_attention_layernorm, norm


def low_rank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) of shapes (out, rank) and (rank, in) whose product is the best rank-`rank`
    approximation of `delta` (out, in) in Frobenius norm; the singular values split evenly. A rank
    above min(out, in) keeps `delta` whole (the extra factors are zero)."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    root = s[:rank].sqrt()
    b, a = u[:, :rank] * root, root[:, None] * vh[:rank]
    missing = rank - len(root)
    return torch.nn.functional.pad(b, (0, missing)), torch.nn.functional.pad(a, (0, 0, 0, missing))


def lora_from_delta(
    base: torch.nn.Module, tuned: Mapping[str, torch.Tensor], rank: int, target_modules: Sequence[str]
) -> PeftModel:
    """`base` wrapped as a PEFT LoRA model (alpha = rank: scaling 1) whose adapter approximates
    `tuned` (a state dict of the same architecture, e.g. a fine-tuning run's `model/` weights):
    `target_modules`, the token embedding (and an untied output layer) at rank `rank`, the norms exactly. `base` is changed
    in place (PEFT wraps its layers); `save_pretrained` on the result writes the adapter."""
    tied = base.get_output_embeddings().weight is base.get_input_embeddings().weight
    targets = [*target_modules, EMBEDDING, *([] if tied else [OUTPUT])]  # a tied output layer moves with the embedding
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, modules_to_save=[NORMS])
    model = get_peft_model(base, config)
    prefix = "base_model.model."
    with torch.no_grad():
        for name, module in model.named_modules():
            key = name.removeprefix(prefix)
            if isinstance(module, LoraLayer):
                weight = module.get_base_layer().weight
                delta = tuned[f"{key}.weight"].to(weight.device, torch.float32) - weight.float()
                if key.endswith(EMBEDDING):  # PEFT's embedding LoRA: delta = (B @ A).T
                    b, a = low_rank_factors(delta.T, rank)
                    module.lora_embedding_B["default"].copy_(b)
                    module.lora_embedding_A["default"].copy_(a)
                else:
                    b, a = low_rank_factors(delta, rank)
                    module.lora_B["default"].weight.copy_(b)
                    module.lora_A["default"].weight.copy_(a)
            elif isinstance(module, ModulesToSaveWrapper):
                module.modules_to_save["default"].weight.copy_(tuned[f"{key}.weight"])
    return model
