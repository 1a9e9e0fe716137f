"""Settings dataclasses as the single source of truth for flags, recipe keys and defaults.

A field declared with `setting(...)` carries its help text and range in its metadata; the CLI
(`slimbert.cli.options.dataclass_options`) turns each such field into a click option, and
recipe files (`from_mapping`) are checked against the same fields, so a default, a range or a
help line is written once:

    @dataclass
    class KDConfig:
        layers: int = setting(3, "Student depth.", min=1)
        temperature: float = setting(2.0, "Softmax temperature T.", min=0, min_open=True)

            ──► --layers INTEGER RANGE [x>=1]  Student depth.  [default: 3]
            ──► recipe key `layers: 3` (or `layers` under a method's section)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from slimbert.errors import SlimbertError

KEY = "slimbert"


@dataclass(frozen=True)
class Setting:
    """What a field says about itself beyond its type and default.

    help:      one line for --help
    min, max:  inclusive bounds, or exclusive with min_open / max_open
    choices:   the allowed values of a text field
    flag:      the option's name when it is not --field-name (e.g. "--eval" for `eval_file`)
    cli:       False keeps the field out of the command line (set by the code, not the user)
    secondary: the off-switch of a boolean pair (--augment/--no-augment); None for is_flag
    multiple:  a tuple of choices given by repeating the flag (--runtime onnx --runtime pytorch)
    none_word: in a comma-separated list of numbers, the word that stands for None (e.g. "own")
    """

    help: str = ""
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    cli: bool = True
    secondary: bool = True
    multiple: bool = False
    none_word: str | None = None


def setting(
    default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **meta: Any
) -> Any:
    """A dataclass field with its help text and range (see `Setting`)."""
    if "choices" in meta and meta["choices"] is not None:
        meta["choices"] = tuple(meta["choices"])
    metadata = {KEY: Setting(help=help, **meta)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def describe(f: dataclasses.Field) -> Setting:
    return f.metadata.get(KEY, Setting())


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def check_ranges(config: Any) -> None:
    """Raise SlimbertError naming the flag when a field is out of its declared range."""
    for f in fields(config):
        meta, value = describe(f), getattr(config, f.name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            if meta.choices and value is not None and value not in meta.choices:
                raise SlimbertError(
                    f"{flag_name(f)} {value!r}: choose one of {', '.join(meta.choices)}"
                )
            continue
        low_bad = meta.min is not None and (
            value <= meta.min if meta.min_open else value < meta.min
        )
        high_bad = meta.max is not None and (
            value >= meta.max if meta.max_open else value > meta.max
        )
        if low_bad or high_bad:
            raise SlimbertError(f"{flag_name(f)} {value}: out of range ({bounds(meta)})")


def bounds(meta: Setting) -> str:
    parts = []
    if meta.min is not None:
        parts.append(f"{'>' if meta.min_open else '≥'} {meta.min:g}")
    if meta.max is not None:
        parts.append(f"{'<' if meta.max_open else '≤'} {meta.max:g}")
    return " and ".join(parts) or "any"


def flag_name(f: dataclasses.Field) -> str:
    return describe(f).flag or "--" + f.name.replace("_", "-")


# ---------------------------------------------------------------------------------------------
# Recipes: a mapping of keys onto a dataclass; unknown keys and wrong types are errors.


class Mismatch(Exception):
    """A recipe value of the wrong type; the message says what was expected."""


def coerce(value: Any, hint: Any) -> Any:
    """`value` as type `hint` (int, float, bool, str, Path, X | None, list[X], tuple[X, ...],
    a nested dataclass), or Mismatch."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg)
            except Mismatch:
                continue
        raise Mismatch(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    if origin in (list, tuple):
        item = args[0]
        if isinstance(value, str) and item in (int, float):
            value = [v.strip() for v in value.split(",") if v.strip()]
            value = [item(v) if _number(v) else v for v in value]
        if not isinstance(value, list | tuple):
            raise Mismatch(f"a list of {getattr(item, '__name__', item)}")
        items = [coerce(v, item) for v in value]
        return items if origin is list else tuple(items)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise Mismatch(f"a mapping of {hint.__name__} keys")
        return from_mapping(hint, value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise Mismatch("a mapping")
        return dict(value)  # checked by whoever reads it (e.g. a method's own settings)
    return _scalar(value, hint)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _scalar(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise Mismatch("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Mismatch("a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Mismatch("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise Mismatch("text")
        return str(value)
    if hint is Path:
        if not isinstance(value, str | Path):
            raise Mismatch("a path")
        return Path(value)
    raise Mismatch(str(hint))


def from_mapping(cls: type, payload: dict, where: str = "") -> Any:
    """An instance of dataclass `cls` from a recipe mapping; keys take dashes or underscores.

    Errors name the key (`section.key`) and what was expected, in one line."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    values = {}
    for key, value in payload.items():
        name = str(key).replace("-", "_")
        path = f"{where}.{name}" if where else name
        if name not in names:
            under = f" under {where}" if where else ""
            raise SlimbertError(
                f"recipe key {path!r} is unknown; valid keys{under}: {', '.join(sorted(names))}"
            )
        try:
            values[name] = (
                from_mapping(hints[name], value, path)
                if is_dataclass(hints[name]) and isinstance(value, dict)
                else coerce(value, hints[name])
            )
        except Mismatch as exc:
            raise SlimbertError(f"recipe key {path!r}: expected {exc}, got {value!r}") from None
    try:
        return cls(**values)
    except TypeError as exc:
        section = f" section {where}" if where else ""
        raise SlimbertError(f"recipe{section}: {exc}; add the missing key") from None
    except SlimbertError as exc:
        if not where:
            raise
        raise SlimbertError(f"recipe section {where}: {exc}") from None


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass `cls` (annotations are strings)."""
    return typing.get_type_hints(cls)
