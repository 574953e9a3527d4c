"""Settings declared once: dataclass fields that carry their help text.

Every spec of polydag (training, generation, quality, ablation, collapse thresholds ...) is a
plain dataclass whose fields are made with :func:`setting`, in the style of TRL's
``<method>_config.py`` (``field(default=..., metadata={"help": ...})``). The help text is what
the Dagster launchpad shows (``polydag.defs.config`` derives the Dagster config classes from
these dataclasses), and validation lives once, in the dataclass's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Sequence

HELP = "help"


def setting(default: Any = dataclasses.MISSING, *, help: str, **kwargs) -> Any:  # noqa: A002
    """A dataclass field with help text; list, tuple and dict defaults are copied per instance."""
    if not help or not help.strip():
        raise ValueError("every setting needs help text")
    metadata = {HELP: " ".join(help.split())}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def help_of(spec: type, name: str) -> str:
    """The help text of field ``name`` of dataclass ``spec`` ("" when it has none)."""
    for f in dataclasses.fields(spec):
        if f.name == name:
            return f.metadata.get(HELP, "")
    raise KeyError(f"{spec.__name__} has no field {name!r}")


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def field_types(spec: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (``from __future__ import annotations`` safe)."""
    return typing.get_type_hints(spec)


def from_mapping(spec: type, values: Mapping[str, Any], *, what: str | None = None):
    """``spec(**values)``, with an unknown key named as an error instead of a TypeError."""
    known = {f.name for f in dataclasses.fields(spec)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {what or spec.__name__} key(s) {unknown}; known keys: {sorted(known)}"
        )
    return spec(**dict(values))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Checks:
    """Collects every problem of one spec, then raises a single ``ValueError`` naming them all
    (each as ``<Spec>.<field> must be ...``).

    ``Checks(self).integer("max_steps", low=1).number("top_p", low=0, low_open=True, high=1)``
    """

    def __init__(self, spec: Any):
        self.spec = spec
        self.problems: list[str] = []

    def need(self, ok: bool, message: str, *, field: str | None = None) -> "Checks":
        if not ok:
            where = type(self.spec).__name__ + (f".{field}" if field else ":")
            self.problems.append(f"{where} {message}")
        return self

    def integer(self, name: str, *, low: int | None = None, high: int | None = None,
                optional: bool = False) -> "Checks":
        value = getattr(self.spec, name)
        if optional and value is None:
            return self
        ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
        bounds = _bounds(low, high, False, False)
        return self.need(ok, f"must be an integer{bounds}, got {value!r}", field=name)

    def number(self, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, optional: bool = False) -> "Checks":
        value = getattr(self.spec, name)
        if optional and value is None:
            return self
        ok = is_number(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        bounds = _bounds(low, high, low_open, high_open)
        return self.need(ok, f"must be a finite number{bounds}, got {value!r}", field=name)

    def choice(self, name: str, options: Sequence[Any]) -> "Checks":
        value = getattr(self.spec, name)
        return self.need(value in options, f"must be one of {tuple(options)}, got {value!r}", field=name)

    def done(self) -> None:
        if self.problems:
            raise ValueError("; ".join(self.problems))


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""
