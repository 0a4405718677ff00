"""Every model x experiment combination users are offered composes, with the values that matter."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))

# model -> (lr, epochs, max_examples, format, dtype, accelerator, max_seq_len)
PAPER = {
    "135m": (5e-5, 1, 16, "compact", "fp32", "cpu", 1024),
    "1b": (5e-5, 2, 250, "paper", "bf16", "gpu", 8192),
    "3b": (5e-5, 2, 250, "paper", "bf16", "gpu", 8192),
    "8b": (1e-4, 2, 250, "paper", "bf16", "gpu", 8192),
}
# experiment -> the resolved values it must set
EXPECTED = {
    "full_ttt": {},
    "no_transformations": {"ttt.augmenters": []},
    "direct_io": {"ttt.mode": "direct"},
    "shared_adapter": {"ttt.adapter": "shared"},
    "no_demo_loss": {"ttt.loss": "test_only"},
    "qlora": {"model.quantization": "4bit"},
    "finetuned_only": {"ttt.enabled": False},
    "voting_flat": {"inference.voting": "flat"},
    "voting_identity": {"inference.transforms": ["identity"]},
    "voting_hierarchical": {"inference.voting": "hierarchical", "inference.selection": "vote"},
    "poe": {"inference.selection": "poe"},
}
DEFAULTS = {
    "ttt.augmenters": None, "ttt.mode": "in_context", "ttt.adapter": "per_task", "ttt.loss": "demonstrations",
    "model.quantization": None, "ttt.enabled": True, "inference.voting": "hierarchical",
    "inference.selection": "vote",
}  # fmt: skip


def compose_with(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def value(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return list(cfg) if hasattr(cfg, "__len__") and not isinstance(cfg, str) else cfg


def test_every_experiment_has_expectations():
    assert sorted(EXPECTED) == EXPERIMENTS and sorted(PAPER) == MODELS


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_model_and_experiment_compose_to_the_expected_values(model, experiment):
    cfg = compose_with(f"model={model}", f"experiment={experiment}")
    lr, epochs, max_examples, text_format, dtype, accelerator, max_seq_len = PAPER[model]
    assert (cfg.ttt.lr, cfg.ttt.epochs, cfg.ttt.max_examples) == (lr, epochs, max_examples)
    assert (cfg.model.format, cfg.model.dtype, cfg.trainer.accelerator) == (text_format, dtype, accelerator)
    assert cfg.data.max_seq_len == max_seq_len
    assert (cfg.ttt.lora.rank, cfg.ttt.lora.alpha, cfg.ttt.lora.dropout) == (128, 16, 0.0)  # paper
    assert cfg.ttt.weight_decay == 0.01 and cfg.ttt.warmup_fraction == 0.1 and cfg.ttt.batch_size == 2
    for key, default in DEFAULTS.items():
        expected = EXPECTED[experiment].get(key, default)
        if expected is not None:
            assert value(cfg, key) == expected, key
    if experiment != "no_transformations":
        assert len(cfg.ttt.augmenters) == 23


def test_the_default_run_is_the_embedded_model_on_five_small_tasks():
    cfg = compose_with()
    assert cfg.model.name_or_path == "embedded" and cfg.trainer.accelerator == "cpu"
    assert list(cfg.data.task_ids) == ["66e6c45b", "00576224", "be03b35f", "4cd1b7b2", "ca8de6ea"]


@pytest.mark.parametrize("data", ["arc_agi_1_small", "arc_agi_1", "arc_agi_2", "kaggle", "task_dir"])
@pytest.mark.parametrize("logger", ["csv", "wandb", "none"])
def test_data_and_logger_groups_compose(data, logger):
    cfg = compose_with(f"data={data}", f"logger={logger}", "model=1b")
    assert cfg.data.num_shards == 1 and cfg.logger.name == logger


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "fsdp"])
def test_the_finetuning_stage_composes_with_every_model_and_trainer(model, trainer):
    cfg = compose_with("stage=finetune", f"model={model}", f"trainer={trainer}")
    ft = cfg.finetune
    assert cfg.stage == "finetune" and cfg.trainer.strategy == {"ddp": "ddp", "fsdp": "fsdp"}.get(trainer, "auto")
    assert ft.method == "full" and ft.lr == 2e-5 and ft.loss == "demonstrations"  # paper: full FT, ~2e-5
    assert ft.max_seq_len == cfg.data.max_seq_len and len(ft.augmenters) == 23
    assert list(ft.exclude_sets) == ["arc-agi-1/evaluation", "arc-agi-2/evaluation"]
    if model == "135m":  # CPU budget
        assert (ft.max_steps, ft.effective_batch_size) == (300, 2)
    else:  # paper: effective batch 32, 2-4 epochs
        assert (ft.max_steps, ft.effective_batch_size, ft.epochs) == (-1, 32, 2)


def test_wandb_job_type_is_the_stage():
    assert compose_with("stage=finetune", "logger=wandb").logger.job_type == "finetune"
    assert compose_with("logger=wandb").logger.job_type == "ttt"
