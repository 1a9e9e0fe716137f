"""Every distillation method by its `slimbert compress` name.

Adding a method: write compress/NAME.py ending with `METHOD = Method(...)` (compress/method.py
says what it holds) and add it to the tuple below. The CLI subcommand, its --help, the
`--recipe` keys and `slimbert experiment`'s `distil: {method: NAME}` all follow from the entry.
"""

from __future__ import annotations

from slimbert.compress import bilstm, kd, minilm, textcnn, theseus, tinybert, tree
from slimbert.compress.method import Method
from slimbert.errors import SlimbertError

METHODS: dict[str, Method] = {
    m.METHOD.name: m.METHOD for m in (kd, tinybert, theseus, minilm, textcnn, bilstm, tree)
}


def get_method(name: str) -> Method:
    """The registered method `name`, or one line naming the ones there are."""
    if name not in METHODS:
        raise SlimbertError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
