"""Layering of the package: the CLI sits on top of the stage modules, and module-level imports have no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "python" / "firemlip"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """firemlip modules imported by ``path`` (``from a.b import c`` counts as a.b and a.b.c when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    out: set[str] = set()
    pkg = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("firemlip")}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                mod = f"{base}.{mod}" if mod else base
            if mod.startswith("firemlip"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def test_stage_modules_never_import_the_cli() -> None:
    offenders = {name: sorted(m for m in _imports(p, module_level_only=False) if m.startswith("firemlip.cli"))
                 for name, p in _modules().items()
                 if not name.startswith("firemlip.cli") and name != "firemlip.__main__"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_command_lives_in_the_cli_package() -> None:
    for name, p in _modules().items():
        if name.startswith("firemlip.cli"):
            continue
        text = p.read_text()
        assert "def register_cli" not in text and "add_subparsers" not in text, name


def test_module_level_imports_have_no_cycles() -> None:
    mods = _modules()
    graph = {name: {m for m in _imports(p, module_level_only=True) if m in mods and m != name}
             for name, p in mods.items()}
    # a package's __init__ importing its own submodules is the normal re-export pattern, not a cycle between
    # layers: drop package -> own submodule edges
    graph = {n: {m for m in deps if not m.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
