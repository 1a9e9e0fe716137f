"""slimbert: distil fine-tuned BERT classifiers into small, fast, measured students.

    import slimbert
    predictor = slimbert.load("runs/kd3-onnx")   # an export folder (see slimbert/api.py)
    predictor(["a gripping film", "dull"])

`import slimbert` stays light: `load` brings in its module (tokenizers, numpy, ONNX Runtime on
first use) only when first touched, and never torch or transformers.
"""

from slimbert.version import __version__

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    if name == "load":
        from slimbert.api import load

        return load
    raise AttributeError(f"module 'slimbert' has no attribute {name!r}")
