"""How our result columns are matched with the paper's: the one matching key for numbers and text,
the booleans of CSV cells, and the paper's main setup. Shared by the sweep analysis and the paper join."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SWEEP_SETUP: dict[str, Any] = {
    "labels": "parts",
    "label_fraction": 1.0,
    "pool_size": 4,
    "drop_background": False,
    "concat_input": False,
}
"""The setup of the paper's sweep tables (8-10): part labels, all of them, 4x4 pooling, background
channel kept, no image concatenated. `compare_with_paper` ignores runs that set one of these
columns to something else (an empty cell means the option does not apply and passes)."""


DECIMALS = 6


def _key(value: Any) -> str:
    """A hashable matching key: floats rounded to 6 decimals, NaN/empty -> ''. So NaN matches NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(number):
        return ""
    return repr(round(number, DECIMALS) + 0.0)


def _as_bool(value: Any) -> bool | None:
    """True/False from bools or their CSV text; None for an empty cell."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text or text == "nan":
            return None
        return text in {"true", "1", "1.0", "yes"}
    return bool(value)


def _in_sweep_setup(results: pd.DataFrame, setup: dict[str, Any]) -> pd.Series:
    """Rows whose variant columns are empty (not applicable) or equal to `setup`."""
    keep = pd.Series(True, index=results.index)
    for column, expected in setup.items():
        if column not in results.columns:
            continue
        if isinstance(expected, bool):
            values = results[column].map(_as_bool)
            keep &= values.isna() | (values == expected)
        else:
            values = results[column].map(_key)
            keep &= (values == "") | (values == _key(expected))
    return keep
