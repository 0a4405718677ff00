"""A full fine-tune shipped as a LoRA of its weight difference (`ttt.model.delta_lora`): exact when
the difference has at most the adapter's rank, the best rank-R approximation otherwise, and it
round-trips through a saved PEFT adapter the way `model.adapter` loads one."""

import copy

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from ttt.model.delta_lora import low_rank_factors, lora_from_delta

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture()
def base():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def fine_tuned(base: LlamaForCausalLM, rank: int) -> dict[str, torch.Tensor]:
    """The base's weights moved by a random difference of rank `rank` (norms by a full one)."""
    generator = torch.Generator().manual_seed(1)
    tuned = {}
    for name, weight in base.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding
            continue
        if weight.ndim == 2:
            out, inp = weight.shape
            delta = torch.randn(out, rank, generator=generator) @ torch.randn(rank, inp, generator=generator) / 10
        else:
            delta = torch.randn(weight.shape, generator=generator) / 10
        tuned[name] = weight + delta
    return tuned


def test_low_rank_factors_are_the_truncated_svd():
    delta = torch.randn(12, 7, generator=torch.Generator().manual_seed(0))
    b, a = low_rank_factors(delta, 3)
    assert b.shape == (12, 3) and a.shape == (3, 7)
    singular = torch.linalg.svdvals(delta)
    # Eckart-Young: the error of the best rank-3 approximation is the norm of the other singular values
    assert torch.linalg.norm(delta - b @ a).item() == pytest.approx(singular[3:].norm().item(), rel=1e-4)
    b, a = low_rank_factors(delta, 9)  # above the matrix's rank: whole, padded with zeros
    assert b.shape == (12, 9) and a.shape == (9, 7) and torch.allclose(b @ a, delta, atol=1e-5)


def test_a_difference_within_the_rank_is_shipped_exactly_and_loads_as_an_adapter(base, tmp_path):
    tuned = fine_tuned(base, rank=2)
    lora_from_delta(copy.deepcopy(base), tuned, 2, TARGETS).save_pretrained(tmp_path, save_embedding_layers=False)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert not [k for k in saved if "lora_" not in k and not k.endswith("norm.weight")]  # factors and norms only
    merged = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).merge_and_unload()
    state = merged.state_dict()
    for name, weight in tuned.items():
        assert torch.allclose(state[name], weight, atol=1e-5), name
    assert merged.lm_head.weight is merged.model.embed_tokens.weight  # still tied: the output layer moved too
    ids = torch.tensor([[1, 5, 9, 2]])
    reference = copy.deepcopy(base)
    reference.load_state_dict(tuned, strict=False)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-4)


def test_a_larger_difference_keeps_its_best_low_rank_part(base):
    tuned = fine_tuned(base, rank=6)
    merged = lora_from_delta(copy.deepcopy(base), tuned, 2, TARGETS).merge_and_unload()
    name = "model.layers.0.mlp.up_proj.weight"
    delta = tuned[name] - base.state_dict()[name]
    error = torch.linalg.norm(tuned[name] - merged.state_dict()[name]).item()
    assert error == pytest.approx(torch.linalg.svdvals(delta)[2:].norm().item(), rel=1e-3)
    assert error > 0.1 * torch.linalg.norm(delta).item()  # the cut is real: rank 2 of 6
