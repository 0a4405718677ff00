"""The ARC fine-tuning adapters shipped for the embedded model (`model.adapter=<name>`): each is small,
loads, merges, and gives the held-out loss its ship command recorded."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ttt.model.loading import SHIPPED_ADAPTERS, load_model
from ttt.ship_adapter import heldout_nll, training_tasks_by_id
from fixtures import compose_config
from ttt.settings import RunSettings, SettingsError

# embedded-arc: LoRA rank 16 (issue 12); embedded-arc-full: a full fine-tune cut to rank 16 (issue 21)
SHIPPED = ["embedded-arc", "embedded-arc-full"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_adapter_is_small_bf16_safetensors_with_a_model_card(name):
    weights = SHIPPED_ADAPTERS / name / "adapter_model.safetensors"
    assert weights.stat().st_size < 12e6  # well under 20 MB
    assert {t.dtype for t in load_file(weights).values()} == {torch.bfloat16}
    card = (SHIPPED_ADAPTERS / name / "README.md").read_text()
    for words in ("optimizer steps", "arc-agi-2/training", "never an evaluation task", "held-out NLL", "python train.py"):
        assert words in card


@pytest.mark.slow  # the embedded model through 32 held-out tasks: about a minute each
@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_adapter_merges_and_gives_its_recorded_heldout_loss(name):
    recorded = json.loads((SHIPPED_ADAPTERS / name / "heldout.json").read_text())
    model = recorded["model"]
    tasks = training_tasks_by_id(list(recorded["samples"]))
    args = (model["name_or_path"], model["dtype"], "cpu", "sdpa")
    tokenizer, base = load_model(*args)
    base_nll = heldout_nll(base, tokenizer, tasks, model["format"], model["max_seq_len"])
    del base
    _, tuned = load_model(*args, adapter=name)
    assert not any("lora" in module for module, _ in tuned.named_modules())  # merged: a plain model
    tuned_nll = heldout_nll(tuned, tokenizer, tasks, model["format"], model["max_seq_len"])
    for task, values in recorded["samples"].items():
        assert tuned_nll[task] == pytest.approx(values["adapted"], abs=0.01), task
        assert base_nll[task] == pytest.approx(values["base"], abs=0.01), task
    assert sum(abs(tuned_nll[t] - base_nll[t]) for t in base_nll) > 0.1  # the adapter changes the model


def test_a_shipped_adapter_is_named_and_an_unknown_name_lists_them():
    assert RunSettings.from_config(compose_config()).model.adapter == "embedded-arc-full"  # the default
    assert RunSettings.from_config(compose_config("model.adapter=null")).model.adapter is None  # the base model
    with pytest.raises(SettingsError, match=r"model.adapter='nope'.*shipped adapters: \['embedded-arc', 'embedded-arc-full'\]"):
        RunSettings.from_config(compose_config("model.adapter=nope"))
    with pytest.raises(SettingsError, match=r"fine-tuned for name_or_path='embedded', not '/tmp'; add model.adapter=null"):
        RunSettings.from_config(compose_config("model.name_or_path=/tmp"))
