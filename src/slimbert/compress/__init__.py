"""Distillation: one training loop, pure loss terms, one file per method."""
