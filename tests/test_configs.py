"""Every model x experiment combination users are offered builds checked settings; each experiment
changes what it names and nothing else; the paper's models carry METHOD.md's recipe."""

import runpy
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ttt.knobs import flatten
from ttt.settings import RunSettings, SettingsError

from fixtures import compose_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
PAPER_MODELS = ["1b", "3b", "8b"]

# experiment -> what it means (the paper's ablations, METHOD.md section 5; the fine-tuning recipes):
# the settings it must have, and the prefixes of the others it may change
EFFECT = {
    "full_ttt": ({}, ()),
    "no_transformations": ({"ttt.augmenters": []}, ("ttt.priority",)),
    "direct_io": ({"ttt.mode": "direct", "ttt.data_rule": "project"}, ()),
    "shared_adapter": ({"ttt.adapter": "shared"}, ()),
    "no_demo_loss": ({"ttt.loss": "test_only"}, ()),
    "qlora": ({"model.quantization": "4bit", "inference.merge_lora": False}, ()),
    "finetuned_only": ({"ttt.enabled": False, "inference.include_n": 0}, ()),
    "voting_flat": ({"inference.voting": "flat", "inference.decoder": "greedy", "inference.selection": "vote"}, ()),
    "voting_identity": ({"inference.transforms": ["identity"], "inference.decoder": "greedy", "inference.selection": "vote"}, ()),
    "voting_hierarchical": ({"inference.voting": "hierarchical", "inference.decoder": "greedy", "inference.selection": "vote"}, ()),
    "poe": ({"inference.selection": "poe"}, ()),
    "finetune_embedded_arc": ({"stage": "finetune", "finetune.method": "lora", "finetune.ship_as": "embedded-arc", "model.adapter": None},
                              ("finetune.",)),
    "finetune_embedded_arc_full": ({"stage": "finetune", "finetune.method": "full", "finetune.ship_as": "embedded-arc-full",
                                    "model.adapter": None}, ("finetune.",)),
}  # fmt: skip
# (model, experiment) -> the refusal a user gets instead: 4-bit weights cannot take a merged adapter
REFUSED = {(m, "qlora"): "model.adapter=null: QLoRA on the base model" for m in ("135m", "135m_paper")}


def settings(*overrides) -> dict:
    return flatten(RunSettings.from_config(compose_config(*overrides)))


def test_every_experiment_has_a_stated_effect():
    assert sorted(EFFECT) == EXPERIMENTS


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_model_and_experiment_builds_and_changes_only_what_it_names(model, experiment):
    if (model, experiment) in REFUSED:
        with pytest.raises(SettingsError, match=REFUSED[model, experiment]):
            settings(f"model={model}", f"experiment={experiment}")
        return
    must, may = EFFECT[experiment]
    stage = [f"stage={must['stage']}"] if "stage" in must else []  # a stage's own defaults are not the experiment's
    base, changed = settings(f"model={model}", *stage), settings(f"model={model}", f"experiment={experiment}")
    assert {key: changed[key] for key in must} == must
    others = {key for key in base if base[key] != changed[key] and key not in must and not key.startswith(may)}
    assert not others, f"experiment={experiment} also changes {sorted(others)} of model={model}"


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_the_paper_models_carry_the_papers_recipe(model):
    s = settings(f"model={model}")
    # METHOD.md section 4: LoRA rank 128 / alpha 16, 2 epochs, 250 samples, batch 2, AdamW, cosine with 10% warm-up
    recipe = {"ttt.lora.rank": 128, "ttt.lora.alpha": 16, "ttt.lora.dropout": 0.0, "ttt.lora.rslora": False, "ttt.epochs": 2,
              "ttt.max_examples": 250, "ttt.batch_size": 2, "ttt.warmup_fraction": 0.1, "ttt.warmup_from_zero": True,
              "ttt.weight_decay": 0.01, "ttt.max_tokens": None, "data.max_seq_len": 8192, "model.dtype": "bf16",
              "trainer.accelerator": "gpu", "ttt.lr": 1e-4 if model == "8b" else 5e-5}  # fmt: skip
    assert {key: s[key] for key in recipe} == recipe
    assert len(s["ttt.augmenters"]) == 23 and s["ttt.priority"] == []  # the paper's augmenters, one uniform cap
    # the reference code's rules (issue 22, ../shared/parity), checked by python -m ttt.parity
    reference = {"inference.voting": "paper", "inference.views": "paper", "model.chat": "reference", "ttt.labels": "paper",
                 "ttt.data_rule": "paper", "ttt.gradient_clip": None, "inference.decoder": "greedy", "inference.selection": "vote",
                 "model.format": "paper"}  # fmt: skip
    assert {key: s[key] for key in reference} == reference


def test_135m_paper_is_the_papers_recipe_on_the_cpu_budget():
    """It differs from the paper's 1B recipe only in the budget, the embedded model and the reference's quirks."""
    small, paper = settings("model=135m_paper"), settings("model=1b")
    budget = {"ttt.epochs", "ttt.max_examples", "ttt.max_tokens", "inference.permutations", "finetune.max_steps",
              "finetune.effective_batch_size"}  # fmt: skip
    model = {key for key in paper if key.startswith(("model.", "trainer."))} | {"ttt.gradient_checkpointing"}
    project = {"ttt.labels", "ttt.data_rule", "ttt.gradient_clip", "ttt.lora.target_modules", "inference.views", "inference.voting",
               "finetune.labels", "finetune.lora.target_modules", "finetune.gradient_checkpointing"}  # fmt: skip
    differ = {key for key in paper if small[key] != paper[key]}
    assert differ - budget - model - project == set()
    assert small["ttt.max_tokens"] and small["trainer.accelerator"] == "cpu"


def test_the_embedded_models_recipe_is_its_own_and_the_paper_one_override_away():
    tuned, paper = settings("model=135m"), settings("model=135m_paper")
    assert tuned["ttt.lr"] != paper["ttt.lr"] and tuned["trainer.accelerator"] == "cpu" and tuned["model.format"] == "compact"
    assert tuned["ttt.max_tokens"] and tuned["ttt.max_tokens"] == paper["ttt.max_tokens"]  # the same CPU budget


def test_the_default_run_is_the_embedded_model_on_five_small_tasks():
    cfg = compose_config()
    assert cfg.model.name_or_path == "embedded" and cfg.trainer.accelerator == "cpu"
    assert cfg.model.adapter == "embedded-arc-full"  # fine-tuned on ARC training tasks (issue 21); null: the base model
    assert list(cfg.data.task_ids) == ["66e6c45b", "00576224", "be03b35f", "4cd1b7b2", "ca8de6ea"]


def test_the_small20_report_set_is_the_list_in_small_tasks_txt_and_the_default_is_its_first_five():
    script = Path(__file__).resolve().parents[1] / "experiments" / "small_tasks.py"
    ids = runpy.run_path(str(script))["read_small_tasks"]()  # the list small_tasks.py wrote to small_tasks.txt
    cfg = compose_config("data=arc_agi_1_small20")
    assert list(cfg.data.task_ids) == ids and len(ids) == 20 and cfg.data.split == "evaluation"
    assert list(compose_config().data.task_ids) == ids[:5]


def test_the_paper_subset_is_its_80_tasks_in_four_levels_and_the_dev_sets_are_training_tasks():
    cfg = compose_config("data=arc_agi_1_paper80")
    assert cfg.data.task_ids is None and cfg.data.split == "evaluation"
    assert {level: len(ids) for level, ids in cfg.data.levels.items()} == {"easy": 20, "medium": 20, "hard": 20, "expert": 20}
    data = RunSettings.from_config(cfg).data
    assert len(set(data.selected_ids)) == 80 and data.level_of()["66e6c45b"] == "easy"
    reference = Path(__file__).resolve().parents[2] / "shared" / "parity" / "paper_subset_80.csv"
    if reference.is_file():  # the reference code's own list (../shared/parity), where it is checked out
        rows = [line.split(",") for line in reference.read_text().split()[1:]]
        assert {t: level for t, level in rows} == data.level_of()
    for dev in ("arc_agi_1_dev", "arc_agi_1_dev_mid"):
        assert compose_config(f"data={dev}").data.split == "training"
    assert not set(compose_config("data=arc_agi_1_dev").data.task_ids) & set(compose_config("data=arc_agi_1_dev_mid").data.task_ids)


@pytest.mark.parametrize("data", ["arc_agi_1_small", "arc_agi_1_small20", "arc_agi_1", "arc_agi_2", "kaggle", "task_dir", "arc_agi_1_paper80"])
@pytest.mark.parametrize("logger", ["csv", "wandb", "none"])
def test_data_and_logger_groups_compose(data, logger):
    cfg = compose_config(f"data={data}", f"logger={logger}", "model=1b")
    assert cfg.data.num_shards == 1 and cfg.logger.name == logger


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "fsdp"])
def test_the_finetuning_stage_composes_with_every_model_and_trainer(model, trainer):
    cfg = compose_config("stage=finetune", f"model={model}", f"trainer={trainer}")
    ft = cfg.finetune
    assert cfg.stage == "finetune" and cfg.trainer.strategy == {"ddp": "ddp", "fsdp": "fsdp"}.get(trainer, "auto")
    assert ft.method == "full" and ft.lr == 2e-5 and ft.loss == "demonstrations"  # paper: full FT, ~2e-5
    assert ft.max_seq_len == cfg.data.max_seq_len and len(ft.augmenters) == 23
    assert list(ft.exclude_sets) == ["arc-agi-1/evaluation", "arc-agi-2/evaluation"]
    if model.startswith("135m"):  # CPU budget
        assert (ft.max_steps, ft.effective_batch_size) == (300, 2)
    else:  # paper: effective batch 32, 2-4 epochs
        assert (ft.max_steps, ft.effective_batch_size, ft.epochs) == (-1, 32, 2)


def test_wandb_job_type_is_the_stage():
    assert compose_config("stage=finetune", "logger=wandb").logger.job_type == "finetune"
    assert compose_config("logger=wandb").logger.job_type == "ttt"


@pytest.mark.parametrize("preset, count, priority", [("paper", 23, 0), ("geometric", 6, 0), ("paper_geometric_first", 23, 7)])
def test_augmenter_presets_override_the_models_choice(preset, count, priority):
    cfg = compose_config("model=135m", f"augmenters={preset}")
    assert len(cfg.ttt.augmenters) == count and len(cfg.ttt.priority) == priority
    RunSettings.from_config(cfg)  # and the run accepts it ("none", the un-augmented samples, first included)


def test_a_priority_outside_the_augmenters_is_refused_by_name():
    with pytest.raises(SettingsError, match=r"ttt.priority.*\['upscale2'\] not in ttt.augmenters"):
        RunSettings.from_config(compose_config("augmenters=geometric", "ttt.priority=[none,upscale2]"))


@pytest.mark.parametrize("search", ["ttt_135m", "ttt_135m_two_sizes"])
def test_the_recipe_search_tunes_on_training_tasks_and_returns_the_adapted_nll(search):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    dev = [*compose_config("data=arc_agi_1_dev").data.task_ids, *compose_config("data=arc_agi_1_dev_mid").data.task_ids]
    assert cfg.data.split == "training" and set(cfg.data.task_ids) <= set(dev)
    assert cfg.objective == "ttt_nll" and cfg.inference.enabled is False
    assert cfg.hydra.sweeper.direction == "minimize" and "ttt.lr" in cfg.hydra.sweeper.params


@pytest.mark.parametrize("model", MODELS)
def test_inference_decodes_like_the_paper_except_where_the_135m_dev_measurement_chose_otherwise(model):
    inference = compose_config(f"model={model}").inference
    chosen = (inference.decoder, inference.dfs_min_prob, inference.selection)
    if model == "135m":  # experiments/decoder.md: dfs 0.1 + nvarc 7/16 vs greedy + vote 4/16 on training tasks
        assert chosen == ("dfs", 0.1, "nvarc")
    else:  # paper: greedy decoding, hierarchical vote
        assert (inference.decoder, inference.selection) == ("greedy", "vote")
    assert inference.merge_lora and inference.dtype is None and inference.normalise == "alphabet"


@pytest.mark.parametrize("model", MODELS)
def test_only_the_tuned_135m_model_stops_answers_that_cannot_have_the_demonstrations_shape(model):
    # experiments/inference_bounds.md section 10: on the training dev sets with TTT, two seeds, stop
    # solved and found what any did, in 0.95x the inference time (0.62-0.81x on large outputs)
    assert compose_config(f"model={model}").inference.expected_shape == ("stop" if model == "135m" else "any")


def test_the_8b_and_1b_models_default_to_the_lora_the_papers_code_ran():
    eight, one = compose_config("model=8b"), compose_config("model=1b")
    assert list(eight.ttt.lora.target_modules) == ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    assert list(one.ttt.lora.target_modules) == ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]  # tied head
    assert eight.ttt.gradient_clip is None and one.ttt.gradient_clip is None
    assert (eight.ttt.lr, eight.ttt.lora.rank, eight.ttt.lora.alpha) == (1e-4, 128, 16)  # the script's default lr ran
    assert compose_config("model=135m").ttt.gradient_clip == 1.0  # this project's


def test_the_yaml_augmenter_lists_are_the_papers_23_as_the_code_names_them():
    """configs/augmenters/paper.yaml and finetune/default.yaml restate ttt.arc.augmenters.PAPER_AUGMENTERS
    (so `--cfg job` shows the list); this keeps the three one list."""
    from ttt.arc.augmenters import PAPER_AUGMENTERS

    cfg = compose_config("augmenters=paper")
    assert list(cfg.ttt.augmenters) == list(cfg.finetune.augmenters) == list(PAPER_AUGMENTERS)
