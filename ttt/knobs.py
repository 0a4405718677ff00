"""Typed, checked settings from a config mapping: the machinery behind `ttt.settings`.

A settings class is a frozen dataclass. Each field's annotation is its type (bool, int, float,
str, `X | None`, `tuple[X, ...]`, `dict[str, X]` or another settings class) and `knob(...)` beside it says which
values are allowed: `choices` (a collection, or a predicate with a description) and bounds
(`ge`, `gt`, `le`, `lt`). A rule that ties several fields is the class's `problems()` method.
`build(cls, mapping, "group.")` returns the settings or raises one `SettingsError` listing every
bad key: the key, the value given and what is allowed.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")

MIN_SEQ_LEN = 64  # tokens: no ARC prompt fits fewer (the chat template and two grids take more)


class SettingsError(ValueError):
    """Bad settings: one line per key, each naming the key, the value and what is allowed."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} bad setting(s), nothing was run:\n{lines}")


@dataclass(frozen=True)
class Choices:
    """Allowed values given by a test rather than a list (e.g. augmenter chains `a+b`)."""

    test: Callable[[Any], bool]
    description: str

    def __contains__(self, value: Any) -> bool:
        return self.test(value)

    def __str__(self) -> str:
        return self.description


def knob(
    default: Any = MISSING,
    *,
    choices: Collection | Choices | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A settings field with its allowed values; for a tuple they apply to every element."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata={"choices": choices, "bounds": bounds})


def build(cls: type[T], mapping: Mapping[str, Any] | None, prefix: str = "") -> T:
    """`cls` from `mapping` (missing keys take their defaults), or a `SettingsError`."""
    problems: list[str] = []
    built = _build(cls, mapping or {}, prefix, problems)
    if problems:
        raise SettingsError(problems)
    return built


def _build(cls: type[T], mapping: Mapping[str, Any], prefix: str, problems: list[str]) -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    for key in sorted(set(mapping) - set(names)):
        problems.append(f"{prefix}{key}: unknown key; {cls.__name__} has: {', '.join(names)}")
    values, bad = {}, False
    for f in fields(cls):
        if not f.init or f.name not in mapping:
            continue
        key, raw, hint = prefix + f.name, mapping[f.name], hints[f.name]
        if is_dataclass(hint):
            if not isinstance(raw, Mapping):
                problems.append(f"{key}={raw!r}: must be a group of settings ({hint.__name__})")
                bad = True
                continue
            count = len(problems)
            values[f.name] = _build(hint, raw, key + ".", problems)
            bad |= len(problems) > count
            continue
        try:
            value = _coerce(raw, hint)
            _check(value, f.metadata)
        except (TypeError, ValueError) as error:
            problems.append(f"{key}={raw!r}: {error}")
            bad = True
            continue
        values[f.name] = value
    if bad:
        return None  # type: ignore[return-value]  # the caller raises with every problem
    settings = cls(**values)
    check = getattr(settings, "problems", None)
    if check is not None:
        problems += [f"{prefix}{p}" for p in check()]
    return settings


def _coerce(value: Any, hint: Any) -> Any:
    """`value` as the annotated type (lists become tuples); TypeError naming what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"must be a list, not {type(value).__name__}")
        return tuple(_coerce(v, args[0]) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"must be a mapping of names to values, not {type(value).__name__}")
        return {_coerce(k, args[0]): _coerce(v, args[1]) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError("must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be a whole number, not {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"must be a number, not {type(value).__name__}")
        return float(value)
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise TypeError(f"{value!r} is a number, not text: quote it")
        if not isinstance(value, str):
            raise TypeError(f"must be text, not {type(value).__name__}")
        return value
    raise TypeError(f"unsupported settings type {hint!r}")  # a bug in a settings class, not in the config


_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
           "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}  # fmt: skip


def _check(value: Any, metadata: Mapping[str, Any]) -> None:
    """ValueError naming the allowed values when `value` (each element of a tuple) is not one."""
    for item in value if isinstance(value, tuple) else (value,):
        if item is None:
            continue
        choices = metadata.get("choices")
        if choices is not None and item not in choices:
            allowed = choices if isinstance(choices, Choices) else ", ".join(map(str, choices))
            raise ValueError(f"{item!r} is not one of: {allowed}" if isinstance(value, tuple) else f"choose one of: {allowed}")
        for name, bound in metadata.get("bounds", {}).items():
            symbol, holds = _BOUNDS[name]
            if not holds(item, bound):
                raise ValueError(f"must be {symbol} {bound}")


def flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    """`{"group.key": value}` for every field of a settings object, nested ones included."""
    flat: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if is_dataclass(value):
            flat.update(flatten(value, f"{prefix}{f.name}."))
        else:
            flat[prefix + f.name] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    """A settings value as JSON reads it back (tuples as lists), so stored settings compare equal."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def differences(
    old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any] | None = None
) -> dict[str, tuple[Any, Any]]:
    """`{key: (old, new)}` for every key whose value differs (a key one side lacks reads None). With
    `defaults`, a key only `new` has reads as its default in `old`: a setting added after `old` was
    written, when the code did what its default does (records made before a knob existed resume)."""
    old = {**{k: v for k, v in (defaults or {}).items() if k in new and k not in old}, **old}
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}

