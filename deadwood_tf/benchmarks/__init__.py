"""The benchmark: Deadwood against its controls, ablations and peers.

- `runner`: trains and evaluates rows (method, sparsity, seed), one JSON each.
- `baselines`: the external peers (tfmot per layer, HYDRA as published and its
  global variant, PQuantML's MDMM and PDP).
- `worst_case`: per-example worst case over strong attacks, for headline models.
- `tables`: the docs' tables from the row files (mean +- std, paired intervals).
- `config`: the reference protocol's settings.
- `coverage`: docs/model_coverage.md's checks, each model through each step
  (TensorFlow, and a JAX column from a process of its own).

Not imported by `deadwood_tf` itself: the library's core does not depend on it.
"""
