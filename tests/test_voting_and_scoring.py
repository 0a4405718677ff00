import json

import pytest
from hypothesis import given, strategies as st

from ttt.arc.scoring import solved, submission_entry, submission_problems, task_score
from ttt.inference.candidates import Prediction
from ttt.inference.voting import vote

A, B, C, D, E = (((i,),) for i in range(1, 6))
X = ((9, 9),)  # the test input: the fallback attempt


def preds(group, *grids, logprob=None):
    return [Prediction(g, group, logprob=logprob) for g in grids]


def test_hierarchical_counts_groups_not_raw_votes():
    # identity: A x5 (top-3 A, B, C); rot90: B, C; flip_lr: B, D
    predictions = (
        preds("identity", A, A, A, A, A, B, C) + preds("rot90", B, C) + preds("flip_lr", B, D)
    )
    attempts, ranked = vote(predictions, X, "hierarchical")
    # B is in 3 groups' top-3, C in 2, A in 1 (though it has the most votes), D in 1
    assert attempts == [B, C]
    assert [c.grid for c in ranked] == [B, C, A, D]


def test_flat_counts_raw_votes():
    predictions = preds("identity", A, A, A, A, A, B, C) + preds("rot90", B, C) + preds("flip_lr", B, D)
    attempts, ranked = vote(predictions, X, "flat")
    assert attempts == [A, B]
    assert [c.grid for c in ranked] == [A, B, C, D]


def test_top_k_per_group_drops_a_groups_fourth_candidate():
    # identity top-3: A, B (2 votes each), then C before D (first seen); D makes rot90's top-3
    _, ranked = vote(preds("identity", A, A, B, B, C, D) + preds("rot90", D), X, "hierarchical", top_k=3)
    assert [(c.grid, c.groups) for c in ranked] == [(A, 1), (B, 1), (D, 1), (C, 1)]
    _, ranked2 = vote(preds("identity", A, A, B, B, C, D, E), X, "hierarchical", top_k=3)
    assert {c.grid: c.groups for c in ranked2} == {A: 1, B: 1, C: 1, D: 0, E: 0}


def test_ties_break_by_identity_votes_then_logprob_then_first_seen():
    # A and B: 2 votes, 2 groups each; B has an identity vote, A does not
    predictions = preds("rot90", A, B) + preds("flip_lr", A) + preds("identity", B)
    assert vote(predictions, X, "flat")[0] == [B, A]
    # no identity votes: better log-probability wins
    predictions = preds("rot90", A, logprob=-3.0) + preds("rot90", B, logprob=-1.0)
    assert vote(predictions, X, "flat")[0] == [B, A]
    # everything equal: first seen wins
    predictions = preds("rot90", C, D)
    assert vote(predictions, X, "hierarchical")[0] == [C, D]


def test_attempts_are_filled_from_fallbacks_and_the_test_input_only_when_no_view_answered():
    assert vote(preds("identity", A, A), X)[0] == [A, ((0,),)]
    assert vote(preds("identity", None, None), X)[0] == [X, ((0,),)]
    assert vote(preds("identity", X), X)[0] == [X, ((0,),)]
    assert vote(preds("identity", ((0,),)), X)[0] == [((0,),), ((1,),)]


def test_unknown_voting_method_is_named():
    with pytest.raises(ValueError, match="inference.voting='majority'"):
        vote([], X, "majority")


grids_1x1 = st.sampled_from([A, B, C, D, None])
predictions_strategy = st.lists(
    st.builds(Prediction, grids_1x1, st.sampled_from(["identity", "rot90", "flip_lr"]),
              st.just(""), st.one_of(st.none(), st.floats(-10, 0))),
    max_size=30,
)  # fmt: skip


@given(predictions_strategy, st.sampled_from(["hierarchical", "flat"]))
def test_voting_is_deterministic_and_always_gives_two_distinct_attempts(predictions, method):
    first = vote(predictions, X, method)[0]
    assert first == vote(list(predictions), X, method)[0]
    assert len(first) == 2 and first[0] != first[1]


def test_scoring_against_known_answers():
    assert solved([A, B], B) and not solved([A, C], B)
    assert task_score([[A, B], [C, D]], [B, E]) == {"score": 0.5, "all_solved": False}
    assert task_score([[A, B], [C, D]], [A, D]) == {"score": 1.0, "all_solved": True}
    assert solved([((1, 2),)], ((1, 2),)) and not solved([((1,), (2,))], ((1, 2),))  # shape counts


def test_submission_validates_against_the_kaggle_schema():
    entry = submission_entry([[A, B], [C, D]])
    assert entry == [{"attempt_1": [[1]], "attempt_2": [[2]]}, {"attempt_1": [[3]], "attempt_2": [[4]]}]
    submission = json.loads(json.dumps({"t1": entry, "t2": submission_entry([[E, A]])}))
    assert submission_problems(submission, {"t1": 2, "t2": 1}) == []
    assert submission_problems(submission, {"t1": 2, "t2": 1, "t3": 1}) == ["task t3: missing"]
    submission["t2"][0]["attempt_2"] = [[1, 12]]
    assert submission_problems(submission, {"t1": 2, "t2": 1}) == [
        "task t2[0].attempt_2: cell (0, 1) is 12, not a colour 0-9"
    ]
    del submission["t1"][1]["attempt_2"]
    assert "task t1[1]: expected exactly attempt_1 and attempt_2" in submission_problems(submission, {"t1": 2, "t2": 1})
