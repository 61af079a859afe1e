"""Typed, validated parameters: dataclasses built from papermill/YAML values.

Notebooks keep a `parameters` cell of plain literals (papermill's rule) and build one of these
dataclasses from it in the next cell, so a misspelt name or a wrong type fails at once with a
message naming the key, before any long compute starts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from fractions import Fraction
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

# Names IPython puts into a notebook's namespace; never parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """A parameter is unknown, missing or of the wrong type."""


def parse_fraction(value: float | int | str, key: str = "value") -> float:
    """Parses an eps/step written as a number or a fraction string such as ``"8/255"``."""
    if isinstance(value, bool):
        raise ParameterError(f"{key}: expected a number or a fraction string like '8/255', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    raise ParameterError(f"{key}: expected a number or a fraction string like '8/255', got {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """True if `value` fits the annotation `tp` (ints are accepted where floats are expected)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        if not isinstance(value, Mapping):
            return False
        if not args:
            return True
        return all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def from_dict(cls: type[T], values: Mapping[str, Any], *, where: str = "parameters") -> T:
    """Builds dataclass `cls` from `values`, rejecting unknown keys and wrong types by name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParameterError(
            f"unknown {where} {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"valid names: {', '.join(sorted(fields))}"
        )
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise ParameterError(
                f"{where} {key!r} must be {_type_name(hints[key])}, got {type(value).__name__} {value!r}"
            )
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ParameterError(f"missing {where} {', '.join(map(repr, missing))} for {cls.__name__}")
    converted = {k: (list(v) if isinstance(v, tuple) and typing.get_origin(hints[k]) is list else v)
                 for k, v in values.items()}
    return cls(**converted)


def from_namespace(cls: type[T], namespace: Mapping[str, Any]) -> T:
    """Builds `cls` from a notebook's globals (the parameters cell plus papermill's injected cell).

    Every public, non-module, non-callable global is treated as a parameter, so a misspelt
    name injected by papermill (which only warns about it) raises here instead. Cells before
    this call should therefore import only modules, functions and classes, not constants.
    """
    values = {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and name not in _IPYTHON_NAMES
        and not isinstance(value, types.ModuleType)
        and not callable(value)
    }
    return from_dict(cls, values, where="notebook parameter")


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain dict of a (possibly nested) dataclass, for YAML/JSON manifests."""
    return dataclasses.asdict(obj)
