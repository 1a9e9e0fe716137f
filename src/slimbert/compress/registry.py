"""Every distillation method by its `slimbert compress` name.

Adding a method: write compress/NAME.py ending with `METHOD = Method(...)` (compress/method.py
says what it holds). Nothing else names it: every module of this package that defines a
module-level `METHOD` is registered when this module is imported, and the CLI subcommand, its
--help, the `--recipe` keys and `slimbert experiment`'s `distil: {method: NAME}` all follow from
the entry. Modules without one (students.py, general.py, pretrain.py, ...) are not methods.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import slimbert.compress
from slimbert.compress.method import Method
from slimbert.errors import SlimbertError

# The order `slimbert compress --help` lists them in: the shipped methods as they were added,
# then any other method by name.
FIRST = ("kd", "tinybert", "theseus", "minilm", "textcnn", "bilstm", "tree", "qat")


def discover(package: ModuleType) -> dict[str, Method]:
    """Every `METHOD` defined at the top of a module of `package`, by its name: FIRST's in that
    order, then the rest sorted. Two modules claiming one name is an error naming both."""
    found: dict[str, Method] = {}
    where: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        # Importing is how a module says whether it is a method; the package's modules import
        # nothing of the CLI, so this runs no command code.
        module = importlib.import_module(info.name)
        method = vars(module).get("METHOD")
        if not isinstance(method, Method):
            continue
        if method.name in found:
            raise SlimbertError(
                f"two modules register the method {method.name!r}: {where[method.name]} and "
                f"{info.name}; rename one"
            )
        found[method.name] = method
        where[method.name] = info.name
    order = [n for n in FIRST if n in found] + sorted(n for n in found if n not in FIRST)
    return {name: found[name] for name in order}


METHODS: dict[str, Method] = discover(slimbert.compress)


def get_method(name: str) -> Method:
    """The registered method `name`, or one line naming the ones there are."""
    if name not in METHODS:
        raise SlimbertError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
