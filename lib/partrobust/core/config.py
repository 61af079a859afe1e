"""Validated parameters: one pydantic v2 model per configuration, one way to validate.

Every configuration of the library (a run's sections, a model, a loader, notebook parameters) is
a `Section`: a pydantic model that forbids unknown keys and checks types strictly (an int is
never a bool, ``"0.1"`` is not a float). `validate` turns pydantic's errors into one
`ParameterError` whose lines name the full dotted key (``train.eps: ...``), so a misspelt name or
a wrong type fails before any long compute starts.

eps and step sizes are `Fraction` fields: a number in (0, 1] or a fraction string such as
``"8/255"`` (``8`` is refused with a hint to write ``8/255``), stored as a float and written back as ``"8/255"`` when the value is a whole number of 1/255 steps
(so configs and run ids stay readable).
"""
from __future__ import annotations

import ast
import copy
import difflib
import re
import types
from fractions import Fraction as _Fraction
from typing import Annotated, Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

T = TypeVar("T", bound=BaseModel)

# Names IPython puts into a notebook's namespace; never parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """A parameter is unknown, missing, of the wrong type or out of range."""


class Section(BaseModel):
    """Base of every configuration: unknown keys are errors, types are checked strictly.

    Floats must be finite (``.inf`` and ``.nan`` are refused, naming the key, like any other bad
    value). Build sections from user values with `validate` (errors become one `ParameterError` naming
    each key); direct construction raises pydantic's `ValidationError` (also a `ValueError`).
    """

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


def parse_fraction(value: float | int | str, key: str = "value") -> float:
    """Parses an eps/step written as a number or a fraction string such as ``"8/255"``."""
    if isinstance(value, bool):
        raise ParameterError(f"{key}: expected a number or a fraction string like '8/255', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(_Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    raise ParameterError(f"{key}: expected a number or a fraction string like '8/255', got {value!r}")


def _parse_fraction_field(value: Any) -> float:
    try:
        number = parse_fraction(value)
    except ParameterError as err:  # pydantic reports ValueErrors with the field's location and input
        raise ValueError(str(err).removeprefix("value: ").split(", got ")[0]) from None
    return check_pixel_budget(number)


def check_pixel_budget(value: float) -> float:
    """eps and step sizes live in [0, 1] pixel units: (0, 1], with a hint for a forgotten ``/255``."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number (a budget in [0, 1] pixel units, e.g. 8/255)")
    if not value > 0:
        raise ValueError("must be > 0 (a budget in [0, 1] pixel units, e.g. 8/255)")
    if value > 1:
        hint = f"; {value:g} looks like 0-255 units: write {value:g}/255" if value <= 255 else ""
        raise ValueError(f"must be <= 1: budgets are in [0, 1] pixel units{hint}")
    return value


def format_fraction(value: float) -> float | str:
    """``8/255`` for whole multiples of 1/255, the plain float otherwise."""
    steps = value * 255
    if value != 0 and abs(steps - round(steps)) < 1e-9:
        return f"{round(steps)}/255"
    return value


Fraction = Annotated[float, BeforeValidator(_parse_fraction_field), PlainSerializer(format_fraction)]
"""An eps or step size: a number in (0, 1] (pixel units) or a string such as ``"8/255"``, written back in that form."""


# --------------------------------------------------------------------------- validation


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The `BaseModel` a field holds: itself, or the item of a list / the non-None member of an Optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_of(arg)
        if found is not None:
            return found
    return None


def _field_names(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the (nested) section at `loc`, for 'unknown key' messages (list indices skipped)."""
    model: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        model = _section_of(getattr(field, "annotation", None))
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def did_you_mean(name: str, valid: list[str]) -> str:
    """``; did you mean 'grid'?`` for a near miss among `valid` (difflib), else ``""``."""
    close = difflib.get_close_matches(name, valid, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _dotted(loc: tuple[Any, ...]) -> str:
    """The dotted key of an error location; list items as ``key[i]``, a params file's ``sweep.0`` as ``sweep block 1``."""
    parts: list[str] = []
    for part in loc:
        if not isinstance(part, int):
            parts.append(str(part))
        elif parts == ["sweep"]:
            parts = [f"sweep block {part + 1}"]
        elif parts:
            parts[-1] += f"[{part}]"
    if parts and parts[0].startswith("sweep block") and len(parts) > 1:
        return f"{parts[0]}: " + ".".join(parts[1:])
    return ".".join(parts)


def format_validation_error(err: ValidationError, cls: type[BaseModel], where: str = "") -> str:
    """One line per problem, each starting with the dotted key."""
    lines = []
    for e in err.errors():
        key = _dotted(tuple(e["loc"])) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _field_names(cls, tuple(e["loc"][:-1]))
            hint = did_you_mean(str(e["loc"][-1]), valid)
            lines.append(f"{key}: unknown key; valid keys here: {', '.join(valid)}{hint}")
        elif e["type"] == "missing":
            lines.append(f"{key}: required but missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(e["input"], Mapping) else f" (got {type(e['input']).__name__} {e['input']!r})"
            if not e["loc"] and re.match(r"[\w.]+: ", msg):  # a cross-field check that names its key itself
                lines.append(msg)
            else:
                lines.append(f"{key}: {msg}{shown}")
    head = f"invalid {where}: " if where else ""
    return head + ("\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines))


def validate(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Builds `cls` from plain values; every problem is reported in one `ParameterError`."""
    if not isinstance(values, Mapping):
        raise ParameterError(f"{where or cls.__name__}: expected a mapping of keys to values, got {type(values).__name__}")
    try:
        return cls.model_validate(dict(values))
    except ValidationError as err:
        raise ParameterError(format_validation_error(err, cls, where or cls.__name__)) from None


PARAMETERS_MARKER = "# Parameters"
"""First line of a notebook's parameters cell (``# Parameters (papermill overrides these ...``), and the
whole first line of the cell papermill injects after it."""


def from_namespace(cls: type[T], namespace: Mapping[str, Any]) -> T:
    """Builds `cls` from a notebook's globals: the names its parameters cell (and papermill's injected
    cell after it) assigns, as they were last run, plus `cls`'s declared fields.

    In a kernel the parameters cell is found in IPython's input history (``In``): the most recent
    executed cell whose first line starts with ``# Parameters``, together with the papermill cells
    (first line exactly ``# Parameters``) run after it. A name those cells assign that `cls` does
    not declare (a misspelt parameter, also one papermill injected) raises; the notebook's other
    globals (``params``, results of later cells) are ignored, so the notebook reruns in the same
    kernel, and an edited parameter takes effect when its cell is rerun. Values are read from the
    namespace. Without an input history (a plain mapping) every public, non-module, non-callable
    name is a parameter.
    """
    history = namespace.get("In")
    cells = [c for c in history if isinstance(c, str)] if isinstance(history, list) else []
    if cells:
        names = _parameter_cell_names(cells)
        if names is None:
            raise ParameterError(f"notebook parameters: run the parameters cell (the one starting {PARAMETERS_MARKER!r}) first")
        names |= {name for name in cls.model_fields if name in namespace}
    else:
        names = {name for name, value in namespace.items() if not name.startswith("_") and name not in _IPYTHON_NAMES
                 and not isinstance(value, types.ModuleType) and not callable(value)}
    return validate(cls, {name: namespace[name] for name in names if name in namespace}, where="notebook parameters")


def _parameter_cell_names(cells: list[str]) -> set[str] | None:
    """Names assigned by the last run parameters cell and papermill's cells after it (None: none run)."""
    names: set[str] | None = None
    for source in reversed(cells):
        first = source.lstrip().split("\n", 1)[0].strip()
        if not first.startswith(PARAMETERS_MARKER):
            if names is not None and first:  # a parameters cell was found; an older cell ends the walk
                break
            continue
        names = (names or set()) | _assigned_names(source)
        if first != PARAMETERS_MARKER:  # the notebook's own parameters cell: nothing before it counts
            break
    return names


def _assigned_names(source: str) -> set[str]:
    """Top-level names a cell assigns (``a = 1``, ``a: int = 1``, ``a, b = 1, 2``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ParameterError(f"notebook parameters: the parameters cell does not parse: {err}") from None
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


# --------------------------------------------------------------------------- dotted keys


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``values["train"]["beta"]`` for key ``"train.beta"``, creating sections as needed."""
    *sections, leaf = key.split(".")
    node = values
    for i, name in enumerate(sections):
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ParameterError(f"{'.'.join(sections[: i + 1])}: is a value, not a section, so {key!r} cannot be set")
        node = child
    node[leaf] = value


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `values` with dotted-key `overrides` applied (later keys win)."""
    out = copy.deepcopy(dict(values))
    for key, value in overrides.items():
        set_dotted(out, key, copy.deepcopy(value))
    return out


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"train.beta=2.0"`` -> ``("train.beta", 2.0)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParameterError(f"--set expects KEY=VALUE (e.g. train.beta=2.0), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ParameterError(f"--set {key}: value {raw!r} is not valid YAML ({err})") from None
    return key.strip(), value


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"beta": 1}}`` -> ``{"train.beta": 1}`` (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def diff_flat(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two flat configs: ``"train.lr: 0.1 -> 0.05"``."""
    missing = object()
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            show = lambda v: "(absent)" if v is missing else repr(v)  # noqa: E731
            lines.append(f"{key}: {show(a)} -> {show(b)}")
    return lines


def to_dict(obj: BaseModel) -> dict[str, Any]:
    """Plain, YAML/JSON-ready values of a section (fractions written as ``"8/255"``)."""
    return obj.model_dump(mode="json")
