"""The layout's rules, checked on the source: module sizes, import cycles, imports inside
functions, and private names imported across modules (benchmarks/results/architecture.md).

    python benchmarks/architecture_check.py [--src src] [--max-lines 400] [--out FILE]

Reads the files only (nothing is imported). Exit status 1 when a module is over --max-lines,
a cycle exists among module-level imports, or a `_private` name is imported from another
module; imports inside functions are listed with the reason written beside them, for review.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def imports(modules: dict[str, Path]):
    """(module-level graph, function-level imports [(module, target, line, comment)],
    private imports [(module, target, name)])."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    inner, private = [], []
    for module, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            if not node.module.startswith("slimbert"):
                continue
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in (t for t in targets if t in modules and t != module):
                if id(node) in top:
                    graph[module].add(target)
                else:
                    # the nearest comment above the import, within three lines
                    above = lines[max(0, node.lineno - 4) : node.lineno - 1]
                    comments = [line.strip() for line in above if line.strip().startswith("#")]
                    before = comments[-1] if comments else ""
                    inner.append((module, target, node.lineno, before))
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append((module, node.module, alias.name))
    return graph, inner, private


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path("src"))
    parser.add_argument("--max-lines", type=int, default=400)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    modules = read_modules(args.src)
    sizes = sorted(((len(p.read_text().splitlines()), m) for m, p in modules.items()), reverse=True)
    graph, inner, private = imports(modules)
    loops = cycles(graph)
    over = [(n, m) for n, m in sizes if n > args.max_lines]
    out = [
        "# Layout check",
        "",
        "Command: `python benchmarks/architecture_check.py "
        "--out benchmarks/results/architecture.md`",
        "",
        f"- Modules: {len(modules)}; largest: "
        + ", ".join(f"{m} ({n})" for n, m in sizes[:5])
        + f"; over {args.max_lines} lines: {len(over)}",
        f"- Import cycles among module-level imports: {len(loops)}"
        + "".join(f"\n  - {' → '.join(c)}" for c in loops),
        f"- Private names imported across modules: {len(private)}"
        + "".join(f"\n  - {m} imports {n} from {t}" for m, t, n in private),
        f"- Imports inside functions (slimbert modules): {len(inner)}",
        "",
        "| Module | Imports | Line | Comment above |",
        "|---|---|---|---|",
    ]
    out += [f"| {m} | {t} | {line} | {note or '–'} |" for m, t, line, note in inner]
    text = "\n".join(out) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 1 if over or loops or private else 0


if __name__ == "__main__":
    sys.exit(main())
