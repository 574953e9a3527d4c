"""Dagster config classes derived from the core specs, so each setting is declared once.

A core spec is a plain dataclass whose fields carry help text (``polydag.core.ops.spec``).
:func:`run_config` turns one or more of them into a ``dagster.Config`` (or a
``ConfigurableResource``) with the same field names, types and defaults, and the help text as
each field's description, so the launchpad documents every field. Values are validated once,
by the spec's own ``__post_init__``, when the asset calls :meth:`DerivedConfig.spec`.

Dagster config has lists where specs have tuples; :meth:`DerivedConfig.spec` converts back.
Settings that only the Dagster layer has (for example a resource's webhook URL) are passed as
``extra`` with their own description; a spec field can be re-declared in ``overrides`` when
the Dagster side must differ (λ, for instance, comes from the partition key, so
``diversity_weight`` is optional there).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence

from dagster import Config
from pydantic import Field

from polydag.core.ops.spec import HELP, field_default, field_types


def _dagster_type(tp: Any) -> Any:
    """The Dagster/pydantic config type for a spec annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _dagster_type(rest[0]) if len(rest) == 1 else typing.Union[tuple(_dagster_type(a) for a in rest)]
        return Optional[inner] if type(None) in args else inner
    if origin in (tuple, list, Sequence, typing.Sequence, set, frozenset):
        item = args[0] if args else str
        return List[_dagster_type(item)]
    if origin in (dict, Mapping, typing.Mapping):
        key, value = args if args else (str, Any)
        return Dict[key, _dagster_type(value)]
    return tp


def _is_tuple(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(tp))
    return origin is tuple


class DerivedConfig:
    """Mixin of the derived classes: build the core spec(s) back from the config values."""

    # dunder names: pydantic would turn single-underscore class attributes into private fields
    __polydag_specs__: tuple[type, ...] = ()
    # spec fields left out on purpose (``exclude``): the asset sets them, a user cannot
    __polydag_excluded__: tuple[str, ...] = ()

    def spec(self, spec_type: type | None = None, **overrides):
        """The core spec ``spec_type`` (default: the first one) from this config's values.

        ``overrides`` replace config values (for example λ from the partition key); the spec's
        ``__post_init__`` validates the result.
        """
        spec_type = spec_type or self.__polydag_specs__[0]
        if spec_type not in self.__polydag_specs__:
            raise TypeError(f"{type(self).__name__} is not derived from {spec_type.__name__}")
        hints = field_types(spec_type)
        values = {}
        for f in dataclasses.fields(spec_type):
            if not f.init or not hasattr(self, f.name):
                continue
            value = getattr(self, f.name)
            if isinstance(value, DerivedConfig):
                value = value.spec()
            elif isinstance(value, list) and _is_tuple(hints[f.name]):
                value = tuple(value)
            values[f.name] = value
        values.update(overrides)
        return spec_type(**values)


def run_config(
    name: str,
    specs: Sequence[type],
    *,
    doc: str,
    base: type = Config,
    exclude: Sequence[str] = (),
    overrides: Mapping[str, tuple[Any, Any, str]] | None = None,
    extra: Mapping[str, tuple[Any, Any, str]] | None = None,
    nested: Mapping[str, tuple[type, str]] | None = None,
    module: str | None = None,
) -> type:
    """A Dagster ``Config`` (or ``base``) class named ``name`` with the fields of ``specs``.

    ``exclude``: spec fields the asset always sets itself (passed to :meth:`DerivedConfig.spec`
    as overrides), so a user cannot. ``overrides`` / ``extra``: ``{field: (type, default,
    description)}`` replacing a spec field or adding a Dagster-only one. ``nested``: ``{field: (derived config class, description)}``
    for a sub-section built from another spec. Two specs may not share a field name.
    """
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    overrides = dict(overrides or {})
    owner: dict[str, str] = {}
    for spec in specs:
        hints = field_types(spec)
        for f in dataclasses.fields(spec):
            if f.name in exclude or not f.init:
                continue
            if f.name in owner:
                raise TypeError(f"{name}: field {f.name!r} is in both {owner[f.name]} and {spec.__name__}")
            owner[f.name] = spec.__name__
            if f.name in overrides:
                tp, default, description = overrides.pop(f.name)
            else:
                tp, default, description = _dagster_type(hints[f.name]), field_default(f), f.metadata.get(HELP, "")
            if default is dataclasses.MISSING:
                raise TypeError(f"{spec.__name__}.{f.name} has no default; a run config needs one")
            if isinstance(default, tuple):
                default = list(default)
            annotations[f.name] = tp
            namespace[f.name] = _field(default, description)
    if overrides:
        raise TypeError(f"{name}: overrides name unknown fields {sorted(overrides)}")
    for key, (tp, default, description) in (extra or {}).items():
        if key in annotations:
            raise TypeError(f"{name}: extra field {key!r} is already a spec field")
        annotations[key] = tp
        namespace[key] = _field(default, description)
    for key, (cls, description) in (nested or {}).items():
        annotations[key] = cls
        namespace[key] = Field(default_factory=cls, description=description)
    namespace.update(
        __annotations__=annotations,
        __doc__=doc,
        __module__=module or __name__,
        __qualname__=name,
        __polydag_specs__=tuple(specs),
        __polydag_excluded__=tuple(exclude),
    )
    return type(name, (DerivedConfig, base), namespace)


def _field(default: Any, description: str):
    if not description:
        raise TypeError("every run-config field needs a description")
    if isinstance(default, (list, dict)):
        value = default
        return Field(default_factory=lambda: type(value)(value), description=description)
    return Field(default=default, description=description)


def described_fields(config_class: type) -> dict[str, str]:
    """``{field: description}`` of a Dagster config class (what the launchpad shows)."""
    return {name: info.description or "" for name, info in config_class.model_fields.items()}
