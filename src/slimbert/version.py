"""slimbert's version (pyproject.toml's), on the lowest floor so that any module may say it
without importing the package's public face (`slimbert/__init__.py`)."""

__version__ = "0.1.0"
