"""Text formats: how a task becomes text for the LM, and how model output becomes a grid again.

A format renders (demonstrations, test input[, test output]) as a list of `Segment`s: prompt text
and the output grids, each output segment marked so the loss mask can find it exactly. Tokenizing
the segments one by one (see `ttt.data.tokenize`) keeps every output on token boundaries, and the
prompt an inference call sees is token-for-token the prefix that training saw.

Two formats share the interface:
- `paper`: the paper's layout. A system message with the reference code's instruction lines and
  each demonstration as `<input> -> <output>#`; the user turn is `<test input> -> `; the assistant
  answers `<output>#`. Grids are printed numpy-style (`[[0 0 5]\n [0 5 0]]`). Two chat layouts
  (`model.chat`) wrap the messages: `template`, the tokenizer's own chat template; `reference`,
  the layout the paper's torchtune tokenizer wrote for Llama-3 (`<|begin_of_text|>`, then per
  message its header, its stripped content tokenized whole, `<|eot_id|>`; no date lines).
- `compact`: one token per cell with the embedded tokenizer. Rows of digits, a newline per row,
  `=` between input and output, `.` after each output. No chat template.

`parse` never raises: it returns a `Parsed` whose `grid` is None and whose `error` says why.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ttt.arc.grid import Grid, MAX_SIDE, from_rows
from ttt.arc.task import Example

SegmentKind = Literal["prompt", "demo_output", "test_output", "answer_header", "answer_end"]
CHATS = ("template", "reference")  # how the paper format's messages become text (model.chat)


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text: prompt text, one output grid with its end marker, or the chat
    tokens that open (`answer_header`) and close (`answer_end`) the answer's turn.

    Segments sharing a `group` are tokenized as one text, as the paper's reference tokenizes each
    chat message whole; a segment without a group is tokenized on its own.
    """

    text: str
    kind: SegmentKind = "prompt"
    group: int | None = None


@dataclass(frozen=True)
class Parsed:
    """A parsed model answer: the grid, or None and the reason it could not be read."""

    grid: Grid | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.grid is not None


class TextFormat(ABC):
    """Serialises tasks for the LM and parses its answers back into grids."""

    name: str
    end_marker: str  # ends every output; generation stops on it

    @abstractmethod
    def grid_text(self, grid: Grid) -> str:
        """The grid as text, without the end marker."""

    @abstractmethod
    def parse_grid(self, text: str) -> Parsed:
        """Text of one grid (no end marker) back into a grid."""

    @abstractmethod
    def render(
        self,
        demonstrations: Sequence[Example],
        test_input: Grid,
        test_output: Grid | None = None,
        tokenizer: Any = None,
    ) -> list[Segment]:
        """Segments for a task; without `test_output`, the prompt that asks for it."""

    def output_text(self, grid: Grid) -> str:
        """An output grid as the model should write it, end marker included."""
        return self.grid_text(grid) + self.end_marker

    def hopeless(self, partial: str, expected: tuple[int | None, int | None] | None = None) -> bool:
        """Whether an unfinished answer can no longer parse: its complete rows are ragged, too
        large or hold bad characters, or the row being written is already too wide. With an
        `expected` (height, width) (`ttt.inference.expected_shape`; a side may be None), also
        whether it can no longer have that shape: a row of another width, or a row past the last.

        An answer that would parse is never called hopeless (short of one padded with more than
        30 blank lines, which a model writing only newlines produces and no grid needs).
        """
        if self.end_marker in partial:
            return False
        if partial.count("\n") > 2 * MAX_SIDE:
            return True
        height, width = expected or (None, None)
        last_row = partial[partial.rfind("\n") + 1 :]
        cells = sum(ch.isdigit() for ch in last_row)
        complete = partial[: partial.rfind("\n")].strip() if "\n" in partial else ""
        if complete:
            parsed = self.parse(self._close(complete))
            if not parsed.ok:
                return True
            rows = len(parsed.grid)
            if width is not None and len(parsed.grid[0]) != width:
                return True
            if height is not None and (rows > height or (rows == height and cells)):
                return True
            width = len(parsed.grid[0])
        return cells > (width or MAX_SIDE)

    def _close(self, complete_rows: str) -> str:
        """Complete rows of an unfinished answer as a parseable grid text (see `hopeless`)."""
        return complete_rows

    def parse(self, text: str) -> Parsed:
        """Model output (anything after the end marker is ignored) into a grid; never raises."""
        try:
            return self.parse_grid(text.split(self.end_marker, 1)[0].strip())
        except Exception as error:  # a parser bug must cost one vote, not the run
            return Parsed(None, f"parser error: {error!r}")


def _check_rows(rows: list[list[int]]) -> Parsed:
    """Shape checks shared by the formats' parsers."""
    if not rows or not rows[0]:
        return Parsed(None, "no grid in the text")
    for r, row in enumerate(rows):
        if len(row) != len(rows[0]):
            return Parsed(None, f"ragged rows: row {r} has {len(row)} cells, row 0 has {len(rows[0])}")
    if len(rows) > MAX_SIDE or len(rows[0]) > MAX_SIDE:
        return Parsed(None, f"grid is {len(rows)}x{len(rows[0])}, larger than {MAX_SIDE}x{MAX_SIDE}")
    return Parsed(from_rows(rows))


def _digits(text: str, where: str) -> list[int] | str:
    bad = next((ch for ch in text if ch not in "0123456789"), None)
    if bad is not None:
        return f"{where} has {bad!r}, not a digit"
    return [int(ch) for ch in text]


class CompactFormat(TextFormat):
    """Rows of digits; `=` line between input and output; `.` after the output."""

    name = "compact"
    end_marker = "."
    separator = "=\n"  # between an input grid and its output

    def grid_text(self, grid: Grid) -> str:
        return "".join("".join(map(str, row)) + "\n" for row in grid)

    def parse_grid(self, text: str) -> Parsed:
        rows = []
        for r, line in enumerate(text.split("\n")):
            cells = _digits(line.strip(), f"row {r}")
            if isinstance(cells, str):
                return Parsed(None, cells)
            rows.append(cells)
        return _check_rows(rows)

    def render(self, demonstrations, test_input, test_output=None, tokenizer=None) -> list[Segment]:
        segments: list[Segment] = []
        prompt = ""
        for demo in demonstrations:
            segments.append(Segment(prompt + self.grid_text(demo.input) + self.separator))
            segments.append(Segment(self.output_text(demo.output), "demo_output"))
            prompt = "\n"
        segments.append(Segment(prompt + self.grid_text(test_input) + self.separator))
        if test_output is not None:
            segments.append(Segment(self.output_text(test_output), "test_output"))
        return segments


class PaperFormat(TextFormat):
    """The paper's messages with numpy-style grids, in the tokenizer's chat template or the
    reference code's Llama-3 chat layout (`chat`)."""

    name = "paper"
    end_marker = "#"
    arrow = " -> "
    # The reference's GPTTextMessageRepresenterV2 prompt (no task description) and its line for
    # python-array grids (ekinakyurek/marc arclib/messagers.py).
    instruction = (
        "Figure out the underlying transformation in the following examples and apply it to the test "
        "case. Here are some examples from this transformation, your answer must follow the format.\n"
        "The input-output grids are provided as python arrays:"
    )

    def __init__(self, chat: str = "template"):
        if chat not in CHATS:
            raise ValueError(f"unknown chat layout {chat!r}; choose one of {CHATS}")
        self.chat = chat

    def grid_text(self, grid: Grid) -> str:
        return "[" + "\n ".join("[" + " ".join(map(str, row)) + "]" for row in grid) + "]"

    def parse_grid(self, text: str) -> Parsed:
        if not (text.startswith("[[") and text.endswith("]]")):
            return Parsed(None, "expected a grid like [[0 1]\\n [2 3]]")
        rows = []
        for r, line in enumerate(text[1:-1].split("\n")):
            line = line.strip()
            if not (line.startswith("[") and line.endswith("]")):
                return Parsed(None, f"row {r} is not bracketed: {line[:40]!r}")
            cells = _digits(line[1:-1].replace(" ", ""), f"row {r}")
            if isinstance(cells, str):
                return Parsed(None, cells)
            rows.append(cells)
        return _check_rows(rows)

    def _close(self, complete_rows: str) -> str:
        return complete_rows + "]"

    def message_segments(self, demonstrations, test_input, test_output=None) -> list[tuple[str, list[Segment]]]:
        """(role, content segments) per chat message, contents as the reference builds them."""
        system = [Segment(self.instruction + "\n")]
        for d in demonstrations:
            system.append(Segment(system.pop().text + self.grid_text(d.input) + self.arrow))
            system += [Segment(self.output_text(d.output), "demo_output"), Segment("\n")]
        messages = [("system", system), ("user", [Segment(self.grid_text(test_input) + self.arrow)])]
        if test_output is not None:
            messages.append(("assistant", [Segment(self.output_text(test_output), "test_output")]))
        return messages

    def messages(self, demonstrations, test_input, test_output=None) -> list[dict[str, str]]:
        """The chat messages as role/content dicts (the reference's texts, before any layout)."""
        return [
            {"role": role, "content": "".join(s.text for s in content)}
            for role, content in self.message_segments(demonstrations, test_input, test_output)
        ]

    def render(self, demonstrations, test_input, test_output=None, tokenizer=None) -> list[Segment]:
        messages = self.message_segments(demonstrations, test_input, test_output)
        if self.chat == "reference":
            _require_llama3_tokens(tokenizer)
            return _reference_chat(messages, generation=test_output is None)
        return _template_chat(tokenizer, messages, generation=test_output is None)


_LLAMA3_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>")


def _require_llama3_tokens(tokenizer: Any) -> None:
    """The reference layout writes Llama-3's special tokens: a tokenizer without them would spell
    them out character by character, so refuse it."""
    if tokenizer is None:
        return
    missing = [t for t in _LLAMA3_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        raise ValueError(
            f"model.chat=reference writes Llama-3's chat tokens, and the tokenizer "
            f"{getattr(tokenizer, 'name_or_path', '')!r} lacks {missing}: use model.chat=template"
        )


def _reference_chat(messages: list[tuple[str, list[Segment]]], generation: bool) -> list[Segment]:
    """The paper's torchtune Llama-3 layout: `<|begin_of_text|>`, then per message a header, the
    content stripped of surrounding whitespace and tokenized whole, `<|eot_id|>`; a training
    sequence ends with `<|end_of_text|>`, a prompt with the assistant's header."""
    segments = [Segment("<|begin_of_text|>")]
    for group, (role, content) in enumerate(messages):
        answer = role == "assistant"
        segments.append(Segment(f"<|start_header_id|>{role}<|end_header_id|>\n\n", "answer_header" if answer else "prompt"))
        segments += _stripped(content, group)
        segments.append(Segment("<|eot_id|>", "answer_end" if answer else "prompt"))
    segments.append(Segment("<|start_header_id|>assistant<|end_header_id|>\n\n" if generation else "<|end_of_text|>"))
    return segments


def _stripped(content: list[Segment], group: int) -> list[Segment]:
    """A message's segments as one tokenization group, whitespace stripped from both ends."""
    content = [Segment(s.text, s.kind, group) for s in content]
    content[0] = Segment(content[0].text.lstrip(), content[0].kind, group)
    content[-1] = Segment(content[-1].text.rstrip(), content[-1].kind, group)
    return [s for s in content if s.text]


# Private-use characters mark where outputs go while the chat template renders the messages.
_SLOT = "\ue000{}\ue001"
_SLOT_RE = re.compile("\ue000(\\d+)\ue001")


def _template_chat(tokenizer: Any, messages: list[tuple[str, list[Segment]]], generation: bool) -> list[Segment]:
    """The messages in the tokenizer's chat template, each output its own segment."""
    outputs = [s for _, content in messages for s in content if s.kind != "prompt"]
    slotted, n = [], 0
    for role, content in messages:
        text = ""
        for s in content:
            if s.kind == "prompt":
                text += s.text
            else:
                text += _SLOT.format(n)
                n += 1
        slotted.append({"role": role, "content": text})
    text = _apply_chat_template(tokenizer, slotted, add_generation_prompt=generation)
    # Split the rendered text at the slots: even pieces are prompt text, odd ones slot numbers.
    pieces = _SLOT_RE.split(text)
    return [outputs[int(p)] if i % 2 else Segment(p) for i, p in enumerate(pieces) if i % 2 or p]


def _apply_chat_template(tokenizer: Any, messages: list[dict], add_generation_prompt: bool) -> str:
    """The tokenizer's chat template; without one, the contents joined by newlines."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    return "\n".join(m["content"] for m in messages)


FORMATS: dict[str, TextFormat] = {f.name: f for f in (CompactFormat(), PaperFormat())}
_REFERENCE_PAPER = PaperFormat("reference")


def get_format(name: str, chat: str = "template") -> TextFormat:
    """The format registered as `name` (`compact` or `paper`); `chat` picks the paper format's
    chat layout (the compact format has none)."""
    if name not in FORMATS:
        raise KeyError(f"unknown text format {name!r}; choose one of {sorted(FORMATS)}")
    if chat not in CHATS:
        raise KeyError(f"unknown chat layout {chat!r}; choose one of {CHATS}")
    return _REFERENCE_PAPER if name == "paper" and chat == "reference" else FORMATS[name]
