"""Parameter validation: unknown names and wrong types fail with the key in the message."""
from dataclasses import dataclass

import pytest

from partrobust.config import ParameterError, from_dict, from_namespace, parse_fraction


@dataclass
class Demo:
    lr: float
    epochs: int
    models: list[str]
    path: str | None = None
    eps: float | str = "8/255"


def test_parse_fraction():
    assert parse_fraction("8/255") == pytest.approx(8 / 255)
    assert parse_fraction(0.5) == 0.5
    assert parse_fraction(1) == 1.0
    for bad in ("eight", True, None, "1/0"):
        with pytest.raises(ParameterError, match="eps"):
            parse_fraction(bad, "eps")


def test_from_dict_accepts_valid_values():
    d = from_dict(Demo, {"lr": 1, "epochs": 3, "models": ["a", "b"]})
    assert d.lr == 1 and d.models == ["a", "b"] and d.path is None


@pytest.mark.parametrize(
    "values, key",
    [
        ({"lr": 0.1, "epochs": 3, "models": [], "epohcs": 2}, "epohcs"),
        ({"lr": "fast", "epochs": 3, "models": []}, "lr"),
        ({"lr": 0.1, "epochs": 3.5, "models": []}, "epochs"),
        ({"lr": 0.1, "epochs": True, "models": []}, "epochs"),
        ({"lr": 0.1, "epochs": 3, "models": "resnet"}, "models"),
        ({"lr": 0.1, "epochs": 3, "models": [1]}, "models"),
        ({"lr": 0.1, "epochs": 3}, "models"),
    ],
)
def test_from_dict_rejects_bad_values(values, key):
    with pytest.raises(ParameterError, match=key):
        from_dict(Demo, values)


def test_from_namespace_ignores_modules_functions_and_private_names():
    import math

    ns = {"lr": 0.1, "epochs": 2, "models": ["x"], "math": math, "print_it": print, "_hidden": 1, "In": [], "Demo": Demo}
    assert from_namespace(Demo, ns).epochs == 2
    ns["typo_name"] = 5
    with pytest.raises(ParameterError, match="typo_name"):
        from_namespace(Demo, ns)
