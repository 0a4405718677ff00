import pytest
from hypothesis import given, strategies as st

from conftest import grids
from ttt.arc.formats import FORMATS, CompactFormat, PaperFormat, get_format
from ttt.arc.grid import grid_problem, to_rows
from ttt.arc.task import Example
from ttt.data.tokenize import SegmentTokenizer

DEMOS = (Example(((1, 2), (3, 4)), ((5,),)), Example(((0,),), ((7, 8),)))


@pytest.mark.parametrize("name", sorted(FORMATS))
@given(grid=grids())
def test_every_format_round_trips_random_grids(name, grid):
    text_format = get_format(name)
    assert text_format.parse(text_format.output_text(grid)).grid == grid


@pytest.mark.parametrize("name", sorted(FORMATS))
@given(text=st.text(max_size=200))
def test_parsing_garbage_never_raises(name, text):
    parsed = get_format(name).parse(text)
    if parsed.ok:  # a grid it reads is a valid ARC grid, and has no error beside it
        assert grid_problem(to_rows(parsed.grid)) is None and parsed.error is None
    else:  # otherwise it says why, in words
        assert isinstance(parsed.error, str) and parsed.error.strip()


@pytest.mark.parametrize(
    "text, error",
    [
        ("12\n3\n.", "ragged rows: row 1 has 1 cells, row 0 has 2"),
        ("12\n3x\n.", "row 1 has 'x', not a digit"),
        (".", "no grid in the text"),
        ("", "no grid in the text"),
        ("0" * 31 + "\n.", "grid is 1x31, larger than 30x30"),
    ],
)
def test_compact_parse_errors(text, error):
    assert CompactFormat().parse(text).error == error


@pytest.mark.parametrize(
    "text, error",
    [
        ("[[1 2]\n [3]]#", "ragged rows: row 1 has 1 cells, row 0 has 2"),
        ("[[1 a]]#", "row 0 has 'a', not a digit"),
        ("12\n34", "expected a grid like [[0 1]\\n [2 3]]"),
        ("[[1 2]\n 3 4]]", "row 1 is not bracketed: '3 4]'"),
    ],
)
def test_paper_parse_errors(text, error):
    assert PaperFormat().parse(text).error == error


def test_parse_stops_at_the_end_marker():
    assert CompactFormat().parse("12\n34\n.\n99\n=\n").grid == ((1, 2), (3, 4))
    assert PaperFormat().parse("[[1 2]]# [[3]]").grid == ((1, 2),)


def test_compact_renders_the_exact_text():
    segments = CompactFormat().render(DEMOS, ((9, 9),), ((1,),))
    assert [(s.kind, s.text) for s in segments] == [
        ("prompt", "12\n34\n=\n"),
        ("demo_output", "5\n."),
        ("prompt", "\n0\n=\n"),
        ("demo_output", "78\n."),
        ("prompt", "\n99\n=\n"),
        ("test_output", "1\n."),
    ]


def test_paper_grids_are_numpy_style_and_outputs_end_with_hash():
    assert PaperFormat().grid_text(((0, 0, 5), (0, 5, 0))) == "[[0 0 5]\n [0 5 0]]"
    assert PaperFormat().output_text(((1,),)) == "[[1]]#"


def test_paper_format_uses_the_chat_template(tokenizer):
    segments = PaperFormat().render(DEMOS, ((9, 9),), ((1,),), tokenizer=tokenizer)
    text = "".join(s.text for s in segments)
    assert text.startswith("<|im_start|>system\nFigure out the underlying transformation")
    assert "[[1 2]\n [3 4]] -> [[5]]#\n[[0]] -> [[7 8]]#" in text
    assert "<|im_start|>user\n[[9 9]] -> <|im_end|>\n<|im_start|>assistant\n[[1]]#<|im_end|>" in text
    assert [s.text for s in segments if s.kind != "prompt"] == ["[[5]]#", "[[7 8]]#", "[[1]]#"]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_inference_prompt_is_the_token_prefix_of_the_training_sequence(name, tokenizer):
    text_format, encoder = get_format(name), SegmentTokenizer(tokenizer)
    prompt = encoder.encode(text_format.render(DEMOS, ((9, 9),), tokenizer=tokenizer)).input_ids
    full = encoder.encode(text_format.render(DEMOS, ((9, 9),), ((1,),), tokenizer=tokenizer)).input_ids
    answer = encoder.ids(text_format.output_text(((1,),)))
    assert full[: len(prompt) + len(answer)] == prompt + answer


@given(grid=grids(max_side=10))
def test_compact_is_one_token_per_cell_with_the_embedded_tokenizer(tokenizer, grid):
    ids = tokenizer(CompactFormat().output_text(grid), add_special_tokens=False)["input_ids"]
    height, width = len(grid), len(grid[0])
    assert len(ids) == height * width + height + 1  # cells, a newline per row, the end marker


@pytest.mark.parametrize("name", sorted(FORMATS))
@given(grid=grids(), cut=st.floats(0, 1))
def test_no_prefix_of_a_valid_answer_is_hopeless(name, grid, cut):
    text = get_format(name).output_text(grid)
    assert not get_format(name).hopeless(text[: int(cut * len(text))])


@pytest.mark.parametrize(
    "name, partial",
    [
        ("compact", "12\n345\n"),  # ragged
        ("compact", "0" * 31 + "\n"),  # too wide
        ("compact", "1\n" * 31),  # too tall
        ("paper", "[[1 2]\n [3 4 5]\n"),
        ("compact", "12\n345"),  # the row being written is already wider than the first
        ("compact", "0" * 31),  # no newline, already over 30 cells
        ("paper", "[[1 2]\n [3 4 5"),
        ("compact", "\n" * 61),  # only newlines
    ],
)
def test_hopeless_answers(name, partial):
    assert get_format(name).hopeless(partial)


@pytest.mark.parametrize("name", sorted(FORMATS))
@given(grid=grids(), cut=st.floats(0, 1))
def test_no_prefix_of_an_answer_of_the_expected_shape_is_hopeless(name, grid, cut):
    text = get_format(name).output_text(grid)
    assert not get_format(name).hopeless(text[: int(cut * len(text))], (len(grid), len(grid[0])))


@pytest.mark.parametrize("name", sorted(FORMATS))
@given(grid=grids(max_side=8))
def test_an_answer_of_another_shape_is_hopeless_before_it_ends(name, grid):
    """One row more than expected, or rows one cell wider or narrower: hopeless before the end."""
    text_format = get_format(name)
    height, width = len(grid), len(grid[0])
    taller = text_format.output_text(grid + grid[:1])
    assert text_format.hopeless(taller[: -len(text_format.end_marker) - 1], (height, None))
    wider = text_format.output_text(tuple(row + row[:1] for row in grid))
    assert text_format.hopeless(wider[: -len(text_format.end_marker) - 1], (None, width))
    if width > 1:
        narrower = text_format.output_text(tuple(row[:-1] for row in grid))
        assert height == 1 or text_format.hopeless(narrower[: -len(text_format.end_marker) - 1], (None, width))
