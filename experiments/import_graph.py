"""The import graph of the `ttt` package, held against its layers: every cycle and every arrow from
a lower layer to a higher one (a module may import its own layer and those below it).

    python experiments/import_graph.py            # layers, then the problems; exit 1 if any
    python experiments/import_graph.py --arrows   # every ttt -> ttt import too

Imports are read from the source (`ast`), those inside functions included: an import moved into a
function to dodge a cycle is still an arrow. `tests/test_import_graph.py` runs the check.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

# Bottom to top. A module belongs to the first layer one of whose names is it or a package above it.
LAYERS = (
    ("base", ("ttt.knobs", "ttt.selection_rules", "ttt.outputs", "ttt.results", "ttt.interrupt", "ttt.host_memory",
              "ttt.deadline", "ttt.console", "ttt.arc", "ttt.grid_drawing")),  # pure Python: grids, formats, files, typed knobs
    ("records", ("ttt.report", "ttt.html_report", "ttt.gather")),  # a run directory's summaries and pages: no torch
    ("data", ("ttt.data",)),  # TTT and fine-tuning sets, tokens
    ("model", ("ttt.model",)),  # loading, LoRA, the loss, teacher-forced scoring
    ("inference", ("ttt.inference",)),  # views, decoding, voting, the predicting callback
    ("settings", ("ttt.settings",)),  # the typed config of every group
    ("stages", ("ttt.adapt", "ttt.finetune", "ttt.ship_adapter", "ttt.resume", "ttt.wandb_logging", "ttt.parity")),
    ("run", ("ttt.run",)),  # the whole job (train.py)
)  # fmt: skip


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at `root` (a folder named `ttt`), by dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def arrows(known: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) for every import of one package module by another."""
    found = set()
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name and not (path.name == "__init__.py" and target.startswith(name + ".")):
                    found.add((name, target))
    return {(a, b) for a, b in found if b != a.split(".")[0]}  # `from ttt import x` is an arrow to ttt.x, not ttt


def layer(name: str) -> int | None:
    for index, (_, names) in enumerate(LAYERS):
        if any(name == n or name.startswith(n + ".") for n in names):
            return index
    return None


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return sorted(groups)


def problems(root: Path) -> list[str]:
    """One line per cycle, upward arrow and module in no layer."""
    known = modules(root)
    edges = arrows(known)
    lines = [f"cycle: {' <-> '.join(group)}" for group in cycles(edges)]
    lines += [f"in no layer: {name}" for name in sorted(known) if layer(name) is None and name != root.name]
    for a, b in sorted(edges):
        la, lb = layer(a), layer(b)
        if la is not None and lb is not None and lb > la:
            lines.append(f"upward: {a} ({LAYERS[la][0]}) imports {b} ({LAYERS[lb][0]})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arrows", action="store_true", help="print every ttt -> ttt import")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / "ttt")
    args = parser.parse_args()
    known = modules(args.root)
    for name, members in reversed(LAYERS):
        print(f"{name:>9}: {' '.join(m for m in sorted(known) if layer(m) == [n for n, _ in LAYERS].index(name))}")
    if args.arrows:
        for a, b in sorted(arrows(known)):
            print(f"{a} -> {b}")
    found = problems(args.root)
    print("\n".join(found) if found else "no cycle, no upward arrow, every module in a layer")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
