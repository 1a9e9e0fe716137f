"""Distillation: one file per method, the one student builder, and the registry that turns each
method into a `slimbert compress` subcommand, a recipe and an experiment cell (registry.py)."""
