"""Experiments on top of the trainers: sweeps (grids and searches on Optuna) and the paper's figures.

This package sits above ``models/`` and ``toolchain/`` (it may import both); nothing imports it except the
``snnc`` CLI, which loads ``experiments.cli_sweep`` by name like every other room's command module.
"""
