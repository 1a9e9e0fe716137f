"""slimbert: distil fine-tuned BERT classifiers into small, fast, measured students."""

__version__ = "0.1.0"
