"""partrobust: part-based models for adversarial robustness (Sitawarin et al., 2022)."""

__version__ = "0.1.0"
