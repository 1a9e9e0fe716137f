"""Professors: teachers made stronger before they teach (boosted ensembles, pair augmentation)."""
