"""Test-time evaluation: per-sample outcomes, the evaluator registry (clean, PGD, AutoAttack and the
attack-side evaluators), the gradient-masking checks and the non-adversarial benchmarks."""
