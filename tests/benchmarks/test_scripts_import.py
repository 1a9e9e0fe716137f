"""Every benchmark script still imports: a script that names a moved or renamed slimbert
function fails here, not hours into a run on the machine the figures come from."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_the_script_imports(script, monkeypatch):
    """Loaded as a module (its main() not run), with its folder on the path as when it runs
    (triton_load.py imports serve_load.py beside it)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    name = f"benchmark_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up here
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_help_prints_usage_and_writes_nothing(script, monkeypatch, tmp_path, capsys):
    """`python benchmarks/X.py --help` answers with its usage and leaves the folder it ran in as
    it was: a script that read its first argument as a path once made a folder named --help."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    assert stop.value.code in (0, None)
    assert "usage" in capsys.readouterr().out.lower()
    assert list(tmp_path.iterdir()) == []
