"""The layout's rules, checked on the source (`make lint` runs it; benchmarks/results/
architecture.md is its report):

- no module over --max-lines (400) lines and no function over --max-function-lines (80);
- no import cycle, counting imports inside functions and under TYPE_CHECKING (a cycle hidden
  in a function is still a cycle in the design);
- no upward import across the floors docs/architecture.md lists (a module imports its own floor
  and the floors above it only);
- no `_private` name imported from another module.

    python benchmarks/architecture_check.py [--src src] [--out FILE]

Reads the files only (nothing is imported). Exit status 1 on any breach not on the allow-lists
below. The allow-lists are a ratchet: each entry names the reason and the size it may not grow
past; an entry that is no longer needed (the module split, the function shortened, the import
gone) is itself reported, so the lists only shrink.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

# docs/architecture.md's floors, top first: a module may import its own floor and those above
FLOORS = [
    (
        "slimbert.errors",
        "slimbert.cpu",
        "slimbert.files",
        "slimbert.settings",
        "slimbert.provenance",
        "slimbert.record",
        "slimbert.version",
    ),
    ("slimbert.hub", "slimbert.cards"),
    ("slimbert.data", "slimbert.data_sources", "slimbert.texts"),
    ("slimbert.families",),
    ("slimbert.batches", "slimbert.metrics"),
    ("slimbert.models", "slimbert.networks"),
    ("slimbert.training",),
    ("slimbert.teachers",),
    ("slimbert.compress",),
    ("slimbert.export",),
    ("slimbert.bench",),
    ("slimbert.auto",),
    ("slimbert.serve",),
    ("slimbert.api",),
    ("slimbert.experiment",),
    ("slimbert.demo",),
    ("slimbert.cli", "slimbert.__main__"),
]
# the package itself (`import slimbert`: the public face, its lazy `load` bringing in api.py)
# sits above every floor; its version lives on the lowest (slimbert.version)
PACKAGE = "slimbert"

# module: (lines it may not grow past, why it is still over the limit)
LONG_MODULES: dict[str, tuple[int, str]] = {}

# "module:function": (lines it may not grow past, why)
LONG_FUNCTIONS = {
    "slimbert.experiment.cells:plan": (172, "one branch per professor kind"),
    "slimbert.export.onnx:export": (137, "the export pipeline's stages in order"),
    "slimbert.compress.teaching:teach": (126, "the joint schemes in one loop"),
    "slimbert.compress.tinybert:run": (118, "three stages"),
}

# "importer -> imported": why it still reaches up
UPWARD: dict[str, str] = {}

# import cycles, each as its sorted modules joined by " <-> ": why
CYCLES: dict[str, str] = {}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def floor_of(module: str) -> int | None:
    """The floor index of `module` (the longest matching prefix), None if none matches."""
    if module == PACKAGE:
        return len(FLOORS)
    best = None
    for index, names in enumerate(FLOORS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (index, len(name))
    return best[0] if best else None


def imports(modules: dict[str, Path]):
    """(graph of every slimbert import, module level or not; private imports
    [(module, target, name)])."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            if not node.module.startswith("slimbert"):
                continue
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            # `from slimbert import settings` imports the module slimbert.settings
            targets = [t for t in targets if t != PACKAGE or node.module != PACKAGE]
            graph[module] |= {t for t in targets if t in modules and t != module}
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append((module, node.module, alias.name))
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def long_functions(modules: dict[str, Path], limit: int) -> dict[str, int]:
    """ "module:function" → lines from `def` to the end (decorators not counted), over `limit`."""
    found = {}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found[f"{module}:{node.name}"] = lines
    return found


def upward_imports(graph: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """("importer -> imported" for every import that reaches up to a lower floor; the modules
    on no floor). The package `slimbert` itself sits at the bottom and may import anything."""
    upward, unplaced = [], []
    for module, targets in sorted(graph.items()):
        here = floor_of(module)
        if here is None:
            unplaced.append(module)
            continue
        for target in sorted(targets):
            there = floor_of(target)
            if there is not None and there > here:
                upward.append(f"{module} -> {target}")
    return upward, unplaced


def check(src: Path, max_lines: int, max_function_lines: int) -> tuple[list[str], list[str]]:
    """(breaches, report lines)."""
    modules = read_modules(src)
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules.items()}
    graph, private = imports(modules)
    breaches, stale = [], []

    for module, lines in sorted(sizes.items(), key=lambda kv: -kv[1]):
        allowed = LONG_MODULES.get(module)
        if lines > max_lines and (allowed is None or lines > allowed[0]):
            ceiling = f" (allowed {allowed[0]})" if allowed else ""
            breaches.append(f"module {module}: {lines} lines, over {max_lines}{ceiling}")
    stale += [f"LONG_MODULES[{m!r}]" for m in LONG_MODULES if sizes.get(m, 0) <= max_lines]

    functions = long_functions(modules, max_function_lines)
    for name, lines in sorted(functions.items(), key=lambda kv: -kv[1]):
        allowed = LONG_FUNCTIONS.get(name)
        if allowed is None or lines > allowed[0]:
            ceiling = f" (allowed {allowed[0]})" if allowed else ""
            breaches.append(
                f"function {name}: {lines} lines, over {max_function_lines}{ceiling}; "
                "split it along its seams"
            )
    stale += [f"LONG_FUNCTIONS[{f!r}]" for f in LONG_FUNCTIONS if f not in functions]

    found_cycles = {" <-> ".join(sorted(set(c))) for c in cycles(graph)}
    breaches += [f"import cycle {c}" for c in sorted(found_cycles - set(CYCLES))]
    stale += [f"CYCLES[{c!r}]" for c in CYCLES if c not in found_cycles]

    upward, unplaced = upward_imports(graph)
    breaches += [f"upward import {u}" for u in upward if u not in UPWARD]
    breaches += [f"module {m} is on no floor: place it in FLOORS" for m in unplaced]
    stale += [f"UPWARD[{u!r}]" for u in UPWARD if u not in upward]
    breaches += [f"{m} imports the private {n} from {t}" for m, t, n in private]
    breaches += [f"allow-list entry no longer needed: {s}" for s in stale]

    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    report = [
        "# Layout check",
        "",
        "Command: `python benchmarks/architecture_check.py "
        "--out benchmarks/results/architecture.md` (run by `make lint`)",
        "",
        f"- Modules: {len(modules)}; largest: " + ", ".join(f"{m} ({n})" for m, n in biggest),
        f"- Over {max_lines} lines: {sum(n > max_lines for n in sizes.values())} "
        f"(allow-listed {len(LONG_MODULES)})",
        f"- Functions over {max_function_lines} lines: {len(functions)} "
        f"(allow-listed {len(LONG_FUNCTIONS)})",
        f"- Import cycles, imports inside functions counted: {len(found_cycles)} "
        f"(allow-listed {len(CYCLES)})",
        f"- Upward imports across floors: {len(upward)} (allow-listed {len(UPWARD)})",
        f"- Private names imported across modules: {len(private)}",
        f"- Breaches: {len(breaches)}",
        *(f"  - {b}" for b in breaches),
    ]
    return breaches, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path("src"))
    parser.add_argument("--max-lines", type=int, default=400)
    parser.add_argument("--max-function-lines", type=int, default=80)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    breaches, report = check(args.src, args.max_lines, args.max_function_lines)
    text = "\n".join(report) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
