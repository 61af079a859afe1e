"""Notebook 00's parameter schema and steps (runs live in `partrobust.run`, sweeps in `partrobust.sweep`)."""
