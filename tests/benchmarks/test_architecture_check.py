"""The layout check `make lint` runs: it catches each kind of breach on a small source tree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "architecture_check.py"


@pytest.fixture(scope="module")
def layout():
    spec = importlib.util.spec_from_file_location("architecture_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(root: Path, name: str, text: str) -> None:
    path = root / "slimbert" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def tree(root: Path, **files: str) -> Path:
    write(root, "__init__.py", "")
    write(root, "errors.py", "class SlimbertError(Exception):\n    pass\n")
    write(root, "training/__init__.py", "")
    for name, text in files.items():
        write(root, name.replace("__", "/") + ".py", text)
    return root


def test_the_shipped_tree_passes(layout):
    breaches, report = layout.check(CHECK.parents[1] / "src", 400, 80)
    assert breaches == [], breaches
    assert any(line.startswith("- Breaches: 0") for line in report)


def test_each_kind_of_breach_is_caught(layout, tmp_path):
    long_body = "\n".join(f"    x{i} = {i}" for i in range(85))
    src = tree(
        tmp_path,
        # errors (the top floor) reaching down to training: upward
        errors_extra="from slimbert.training.step import run\n",
        # a cycle through an import inside a function
        training__step=(
            "from slimbert.errors import SlimbertError\n\n"
            "def run():\n    from slimbert.training.more import go\n    return go\n"
        ),
        training__more=f"from slimbert.training.step import run\n\ndef go():\n{long_body}\n",
        models="from slimbert.training.step import _hidden\n",
    )
    # errors_extra is not on any floor: it is reported too
    breaches, _ = layout.check(src, 400, 80)
    text = "\n".join(breaches)
    assert "function slimbert.training.more:go: 86 lines, over 80" in text
    assert "import cycle slimbert.training.more <-> slimbert.training.step" in text
    assert "module slimbert.errors_extra is on no floor" in text
    assert "slimbert.models imports the private _hidden from slimbert.training.step" in text
    # models sits above training: importing it reaches down the list, i.e. up the floors
    assert "upward import slimbert.models -> slimbert.training.step" in text
    assert "slimbert.training.step -> slimbert.errors" not in text  # to a higher floor is fine


def test_an_upward_import_and_a_long_module_are_caught(layout, tmp_path):
    src = tree(
        tmp_path,
        metrics="from slimbert.models import load\n" + "\n" * 401,
        models="def load():\n    return 1\n",
    )
    breaches, _ = layout.check(src, 400, 80)
    assert "upward import slimbert.metrics -> slimbert.models" in breaches
    assert any(b.startswith("module slimbert.metrics: 40") and "over 400" in b for b in breaches)


def test_an_allow_list_entry_no_longer_needed_is_reported(layout, tmp_path, monkeypatch):
    monkeypatch.setitem(layout.LONG_MODULES, "slimbert.errors", (500, "was long once"))
    breaches, _ = layout.check(tree(tmp_path), 400, 80)
    assert "allow-list entry no longer needed: LONG_MODULES['slimbert.errors']" in breaches
