"""Helpers the test modules share: the composed config, a tiny random Llama, a whole tiny run.

Pytest fixtures (the real tokenizer, the tiny model saved as a directory, `train.py` as a
subprocess) are in conftest.py; these are plain functions and constants, imported by name.
"""

import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from transformers import LlamaConfig, LlamaForCausalLM

from ttt.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
RUN_TASKS = ["66e6c45b", "00576224"]  # small grids: TTT samples fit 512 tokens
THREE = ["00576224", "66e6c45b", "be03b35f"]  # the order a run takes them in (sorted)


def compose_config(*overrides):
    """`configs/train.yaml` composed with Hydra overrides (`"ttt.lr=1e-3"`), as train.py would."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def tiny_config(**overrides) -> RunSettings:
    """Checked settings of a few-sample, two-epoch TTT recipe on short sequences in fp32."""
    defaults = {
        "ttt.max_examples": 4, "ttt.epochs": 2, "ttt.lr": 1e-3, "ttt.lora.rank": 8,
        "data.max_seq_len": 512, "trainer.precision": "32-true", "trainer.progress_bar": False,
        "ttt.augmenters": "[rot90,flip_lr]",
    }  # fmt: skip
    defaults.update(overrides)
    return RunSettings.from_config(compose_config(*(f"{k}={v}" for k, v in defaults.items())))


def tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    """A 2-layer, 32-wide random Llama (seeded): trains in milliseconds, no download."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        initializer_range=0.2,  # larger than default so a few LoRA steps visibly move the loss
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


class CharTokenizer:
    """A stand-in tokenizer (one id per character) so 400 tasks render fast; the real one is
    exercised by the LM tests."""

    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def tiny_run(model_dir, task_ids=RUN_TASKS) -> list[str]:
    """Overrides for a whole run of the tiny model saved in `model_dir`: one epoch, 2 samples, one view."""
    return [
        f"model.name_or_path={model_dir}", "model.adapter=null", "model.format=compact", "ttt.max_examples=2", "ttt.epochs=1",
        "ttt.lora.rank=4", "ttt.lr=1e-3", "data.max_seq_len=512", "inference.max_new_tokens=20",
        "inference.transforms=[identity]", "trainer.progress_bar=false", f"data.task_ids=[{','.join(task_ids)}]",
    ]  # fmt: skip


def run_in(out_dir, model_dir, *overrides, task_ids=RUN_TASKS):
    """`ttt.run.run` of the tiny model into `out_dir`, in this process; its metrics."""
    from ttt.run import run

    return run(compose_config(*tiny_run(model_dir, task_ids), f"paths.output_dir={out_dir}", *overrides))


def read_json(path):
    return json.loads(Path(path).read_text())
