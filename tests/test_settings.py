"""Typed settings: every bad value is refused, naming the key, before any task or model loads."""


import pytest

import ttt.run as run_module
from ttt.knobs import SettingsError, build, flatten
from ttt.model.lora import LoraSettings
from ttt.settings import InferenceSettings, RunSettings, TTTSettings

from fixtures import compose_config

# (override, what the message must say): the values a new user tried on main before these settings
BAD = [
    ("inference.selection=pov", "inference.selection='pov': choose one of: vote, poe"),
    ("inference.voting=flatt", "inference.voting='flatt': choose one of: hierarchical, flat, paper"),
    ("inference.transforms=[identity,rot45]", "'rot45' is not one of: identity, rot90"),
    ("ttt.lr=-1", "ttt.lr=-1: must be > 0"),
    ("ttt.batch_size=0", "ttt.batch_size=0: must be >= 1"),
    ("ttt.augmenters=[bogus]", "ttt.augmenters=['bogus']: 'bogus' is not one of: registered augmenters"),
    ("ttt.augmenters=[rot90+bogus]", "'rot90+bogus' is not one of"),
    ("data.max_seq_len=10", "data.max_seq_len=10: must be >= 64"),
    ("ttt.mode=bogus", "ttt.mode='bogus': choose one of: in_context, direct"),
    ("ttt.adapter=bogus", "ttt.adapter='bogus': choose one of: per_task, shared"),
    ("ttt.lora.rank=0", "ttt.lora.rank=0: must be >= 1"),
    ("model.name_or_path=/nonexistent", "model.name_or_path='/nonexistent': no such file or directory"),
    ("stage=tt", "stage='tt': choose one of: ttt, finetune"),
    ("model.dtype=fp8", "model.dtype='fp8': choose one of: bf16, fp32, fp16"),
    ("model.format=json", "model.format='json': choose one of: compact, paper"),
    ("trainer.precision=half", "trainer.precision='half': choose one of:"),
    ("ttt.warmup_fraction=1.5", "ttt.warmup_fraction=1.5: must be < 1"),
    ("ttt.epochs=two", "ttt.epochs='two': must be a whole number, not str"),
    ("ttt.enabled=maybe", "ttt.enabled='maybe': must be true or false"),
    ("data.shard=2", "data.shard=2: must be < num_shards=1"),
    ("data.dataset=arc-agi-3", "data.dataset='arc-agi-3': choose one of: arc-agi-1, arc-agi-2"),
    ("data.task_dir=/no/such/dir", "data.task_dir='/no/such/dir': no such directory"),
    ("+ttt.learning_rate=1e-4", "ttt.learning_rate: unknown key; TTTSettings has: enabled, adapter"),
    ("ttt.priority=[translate]", "ttt.priority=['translate']: ['translate'] not in ttt.augmenters"),
    ("finetune.apply_to=[inputs]", "finetune.apply_to=['inputs']: 'inputs' is not one of: both, input, output"),
    ("resume=yes", "resume='yes': choose one of: check, redo, force"),
    ("ttt.head=format ttt.labels=paper", "ttt.head=format: labels='paper' label chat tokens outside the format's"),
    ("ttt.logits=some", "ttt.logits='some': choose one of: labelled, all"),
    ("trainer.host_memory=keep", "trainer.host_memory='keep': choose one of: reuse, system"),
    ("trainer.compile=sometimes", "trainer.compile='sometimes': must be true or false"),
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_is_refused_before_any_task_or_model_loads(override, message, tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the run went past its settings")

    monkeypatch.setattr(run_module, "load_model", must_not_run)
    monkeypatch.setattr(run_module, "load_tasks", must_not_run)
    with pytest.raises(SettingsError) as refused:
        run_module.run(compose_config(*override.split(), f"paths.output_dir={tmp_path}"))
    assert message in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_every_bad_key_is_listed_at_once():
    with pytest.raises(SettingsError) as refused:
        RunSettings.from_config(compose_config("ttt.lr=0", "ttt.mode=x", "inference.top_k=0"))
    assert len(refused.value.problems) == 3
    assert str(refused.value).startswith("3 bad setting(s), nothing was run:")


def test_train_py_refuses_a_bad_value_with_the_key_and_a_non_zero_exit(train_py, tmp_path):
    result = train_py("ttt.lr=-1", "inference.selection=pov", f"hydra.run.dir={tmp_path}", timeout=120)
    assert result.returncode == 1
    assert "error: 2 bad setting(s), nothing was run:" in result.stderr
    assert "ttt.lr=-1: must be > 0" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run.json").exists()  # refused before the run began


def test_the_shipped_configs_build():
    settings = RunSettings.from_config(compose_config())
    assert settings.ttt.lora == LoraSettings(rank=32, alpha=64.0)  # the 135m recipe (recipe_search.md, search 2)
    assert settings.inference.max_seq_len == settings.data.max_seq_len == 8192  # inference reads data's
    paper = RunSettings.from_config(compose_config("model=135m_paper"))
    assert (paper.ttt.lr, paper.ttt.lora.rank, paper.ttt.lora.alpha) == (5e-5, 128, 16.0)  # METHOD.md


@pytest.mark.parametrize("model", ["135m", "135m_paper", "1b", "3b", "8b"])
@pytest.mark.parametrize("stage", ["ttt", "finetune"])
def test_every_model_builds_for_both_stages(model, stage):
    RunSettings.from_config(compose_config(f"model={model}", f"stage={stage}"))


def test_defaults_are_the_papers():
    ttt, inference = TTTSettings(), InferenceSettings()
    assert (ttt.lr, ttt.epochs, ttt.batch_size, ttt.max_examples, ttt.warmup_fraction) == (5e-5, 2, 2, 250, 0.1)
    assert (ttt.lora.rank, ttt.lora.alpha, ttt.loss, ttt.mode, len(ttt.augmenters)) == (128, 16, "demonstrations", "in_context", 23)
    assert (inference.permutations, inference.voting, inference.top_k, len(inference.transforms)) == (2, "hierarchical", 3, 7)


def test_settings_are_frozen_and_flatten_to_dotted_keys():
    settings = RunSettings.from_config(compose_config())
    with pytest.raises(AttributeError):
        settings.ttt.lr = 1.0  # type: ignore[misc]
    flat = settings.flat()
    assert flat["ttt.lora.rank"] == 32 and flat["inference.transforms"][0] == "identity"
    assert flatten(LoraSettings()) == {"rank": 128, "alpha": 16, "dropout": 0.0, "rslora": False,
                                       "target_modules": list(LoraSettings().target_modules)}  # fmt: skip


def test_build_takes_defaults_for_missing_keys_and_coerces_lists_and_ints():
    built = build(LoraSettings, {"alpha": 8, "target_modules": ["q_proj"]}, "ttt.lora.")
    assert built == LoraSettings(alpha=8.0, target_modules=("q_proj",)) and isinstance(built.alpha, float)
    with pytest.raises(SettingsError, match=r"ttt.lora.target_modules=\[\]: name at least one module"):
        build(LoraSettings, {"target_modules": []}, "ttt.lora.")


def test_a_sweep_objective_must_be_a_number_the_run_returns(tmp_path):
    from ttt.outputs import METRIC_KEYS
    from ttt.report import summarize_adaptation
    from ttt.results import metrics_from_rows

    with pytest.raises(SettingsError, match="objective='ttt_nl': choose one of: num_tasks"):
        RunSettings.from_config(compose_config("objective=ttt_nl"))
    row = {"task_id": "t", "score": 1.0, "vote_score": 1.0, "all_solved": True, "oracle": 1.0, "view_accuracy": 1.0,
           "ttt_status": "done", "ttt_seconds": 1.0, "seconds": 1.0, "predicted": True}  # fmt: skip
    record = {"task_id": "t", "status": "done", "seconds": 1.0, "base_nll": 1.0, "ttt_nll": 0.5}
    returned = set(metrics_from_rows([row])) | set(summarize_adaptation([record], tmp_path))
    assert returned - {"ttt_errors", "by_level"} == set(METRIC_KEYS)  # every number a run returns can be an objective


@pytest.mark.parametrize("has_bf16,expected", [(True, ("bf16", "bf16-mixed")), (False, ("fp32", "32-true"))])
def test_auto_precision_is_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch, has_bf16, expected):
    """CPU instructions are mocked here: the test must hold on any machine (this one has AMX)."""
    import ttt.model.precision as precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
    settings = RunSettings.from_config(compose_config("model.dtype=auto", "trainer.precision=auto"))
    assert (settings.model.dtype, settings.trainer.precision) == expected
    assert (settings.flat()["model.dtype"], settings.flat()["trainer.precision"]) == expected  # as run.json records
    gpu = RunSettings.from_config(compose_config("model.dtype=auto", "trainer.precision=auto", "model.device=cuda"))
    assert (gpu.model.dtype, gpu.trainer.precision) == ("bf16", "bf16-mixed")
    finetune = RunSettings.from_config(compose_config("stage=finetune", "model.dtype=auto", "trainer.precision=auto"))
    assert (finetune.model.dtype, finetune.trainer.precision) == ("fp32", expected[1])  # trained or merged into
    fixed = RunSettings.from_config(compose_config("model.dtype=fp32", "trainer.precision=32-true"))
    assert (fixed.model.dtype, fixed.trainer.precision) == ("fp32", "32-true")  # a value given is kept


def test_a_setting_added_after_a_record_was_made_reads_as_its_default_there():
    from ttt.knobs import differences

    old = {"inference.decoder": "dfs"}  # written before inference.constrain_shape existed
    defaults = RunSettings().flat()
    assert differences(old, {"inference.decoder": "dfs", "inference.constrain_shape": False}, defaults) == {}
    assert differences(old, {"inference.decoder": "dfs", "inference.constrain_shape": True}, defaults) == {
        "inference.constrain_shape": (False, True)
    }  # the record was made without the guard: refused
    assert differences(old, {"inference.constrain_shape": False}) == {
        "inference.constrain_shape": (None, False),
        "inference.decoder": ("dfs", None),
    }  # without defaults a missing key reads None, as before


def test_compile_auto_is_on_for_long_cpu_runs_and_fine_tuning_only():
    settings = RunSettings.from_config(compose_config())  # model=135m, trainer=cpu: trainer.compile=null
    assert settings.trainer.compile is None
    assert settings.for_tasks(9).trainer.compile is False and settings.for_tasks(10).trainer.compile is True
    assert RunSettings.from_config(compose_config("trainer=gpu", "trainer.compile=null")).for_tasks(400).trainer.compile is False
    assert RunSettings.from_config(compose_config("trainer.compile=false")).for_tasks(400).trainer.compile is False
    assert RunSettings.from_config(compose_config("stage=finetune")).trainer.compile is True
