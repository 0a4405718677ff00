"""The shape guard of constrained decoding: every grid's own tokens pass it, nothing it lets
through fails to parse, and it stops the malformed answers seen on large tasks (ragged rows, a
31st row, an end in mid-row). Real tokenizer, both formats."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttt.arc.formats import get_format
from ttt.arc.grid import MAX_SIDE
from ttt.inference.answer_head import AnswerHead
from ttt.inference.answer_shape import ShapeGuard

from conftest import grids
from fixtures import tiny_llama

FORMATS = ("compact", "paper")


@pytest.fixture(scope="module")
def heads(tokenizer):
    model = tiny_llama(len(tokenizer))  # only its output rows are read: which tokens an answer may use
    return {name: AnswerHead(model, tokenizer, get_format(name)) for name in FORMATS}


def guard_of(head, name):
    return ShapeGuard(name, head.pieces, head.stops.tolist(), get_format(name).end_marker)


def walk(guard, head, tokenizer, text):
    """The guard's shape after each token of `text` (None once a token is refused)."""
    shape, shapes = guard.start, []
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        shape = guard.after(shape, head.position[token]) if shape is not None else None
        shapes.append(shape)
    return shapes


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=40, deadline=None)
@given(grid=grids())
def test_every_grid_written_as_the_format_writes_it_passes_the_guard(tokenizer, heads, name, grid):
    head, text_format = heads[name], get_format(name)
    guard = guard_of(head, name)
    shapes = walk(guard, head, tokenizer, text_format.output_text(grid))
    assert None not in shapes
    assert shapes[-1].phase == "done" and shapes[-1].rows == len(grid) and shapes[-1].width == len(grid[0])
    eos = head.position[tokenizer.eos_token_id]
    assert guard.after(shapes[-2], eos) is not None  # EOS may end it where the end marker may


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), stop_bias=st.sampled_from([0.01, 0.2]))
def test_any_answer_the_guard_lets_through_parses(tokenizer, heads, name, seed, stop_bias):
    """Random walks over the allowed tokens, ending as soon as a stop is drawn: all parse."""
    head, text_format, rng = heads[name], get_format(name), random.Random(seed)
    guard = guard_of(head, name)
    shape, tokens = guard.start, []
    while shape.phase != "done":
        allowed = guard.allowed([shape])[0].nonzero().flatten().tolist()
        assert allowed, (name, tokens)  # never a dead end
        stops = [i for i in allowed if head.stops[i]]
        index = rng.choice(stops) if stops and rng.random() < stop_bias else rng.choice(allowed)
        shape = guard.after(shape, index)
        tokens.append(int(head.token_ids[index]))
        assert len(tokens) < 4 * MAX_SIDE * (MAX_SIDE + 1)
    text = tokenizer.decode(tokens, skip_special_tokens=True)  # as the decoder reads it
    parsed = text_format.parse(text)
    assert parsed.ok, (text, parsed.error)
    assert (len(parsed.grid), len(parsed.grid[0])) == (shape.rows, shape.width)


def allowed_after(tokenizer, heads, name, text) -> set[str]:
    """The answer pieces the guard allows after the partial answer `text`."""
    head = heads[name]
    guard = guard_of(head, name)
    shape = (walk(guard, head, tokenizer, text) or [guard.start])[-1]
    assert shape is not None, f"{text!r} itself was refused"
    return {head.pieces[i] for i in guard.allowed([shape])[0].nonzero().flatten().tolist()}


def test_compact_rows_keep_the_first_rows_width_and_stop_after_thirty(tokenizer, heads):
    after = lambda text: allowed_after(tokenizer, heads, "compact", text)  # noqa: E731
    assert "\n" not in after("123\n45")  # a short row cannot end
    assert "." not in after("123\n45")  # nor can the answer, in mid-row
    assert "7" not in after("123\n456")  # nor can a row grow past the first one's width
    assert {"\n", ".", "<|im_end|>"} <= after("123\n456")
    assert after("12\n" * MAX_SIDE) == {"<|im_end|>", "."}  # a 31st row is refused: only the end
    assert "." not in after("")  # no empty answer
    assert "1" not in after("1" * MAX_SIDE)  # no row over 30 cells


def test_paper_rows_are_bracketed_and_as_wide_as_the_first(tokenizer, heads):
    after = lambda text: allowed_after(tokenizer, heads, "paper", text)  # noqa: E731
    assert "]" not in after("[[0 1 2]\n [3 4") and " " in after("[[0 1 2]\n [3 4")  # a short row cannot close
    assert " " not in after("[[0 1 2]\n [3 4 5") and "]]" in after("[[0 1 2]\n [3 4 5")
    assert "#" not in after("[[0 1 2]\n [3 4 5")  # the end only after the grid closes
    assert after("[[0 1 2]\n [3 4 5]]") == {"<|im_end|>", "#"}


def test_an_unknown_format_is_a_clear_error(heads):
    with pytest.raises(ValueError, match="no grid grammar for format 'yaml'"):
        ShapeGuard("yaml", heads["compact"].pieces, heads["compact"].stops.tolist(), ".")


def test_constrain_shape_with_the_generate_decoder_is_a_clear_error():
    from ttt.inference.predict import InferenceSettings

    assert not InferenceSettings(constrain_shape=True).problems()
    problems = InferenceSettings(decoder="generate", constrain_shape=True).problems()
    assert any("decoder=generate needs constrain_shape=false" in p for p in problems)
