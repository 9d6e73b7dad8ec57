"""The parts import one way: core and deploy at the bottom, actors and serve above core, cluster on top.

Built from the source with `ast`, imports inside functions included, so a cycle cannot hide in a
function body. Installed, the parts live under the one name `freshvec`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# part -> the parts it may import (besides itself): core at the bottom, then deploy, actors and serve, cluster on top
ALLOWED = {
    "core": set(),
    "deploy": {"core"},
    "actors": {"core"},
    "serve": {"core"},
    "cluster": {"core", "actors", "serve", "deploy"},
}


def _modules() -> dict[str, Path]:
    """freshvec.<part>.<...> -> source file, for every module of every part."""
    out = {}
    for part in ALLOWED:
        for path in (ROOT / part).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            names = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            out[".".join(["freshvec", *names])] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports, anywhere in its file; bare part names count as themselves."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ALLOWED:  # `import cluster...`: the old top-level names
                found.add(name)
            elif name.startswith("freshvec."):
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                if name in known:
                    found.add(name)
    return found - {module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _part(module: str) -> str:
    return module.split(".")[1] if module.startswith("freshvec.") else module.split(".")[0]


def test_the_graph_sees_imports_inside_functions():
    graph = _graph()
    # cluster/cli.py imports the stack only inside its `services` command
    assert "freshvec.deploy.local.stack" in graph["freshvec.cluster.cli"]
    assert "freshvec.core.config" in graph["freshvec.actors.consumer"]


def test_no_part_imports_one_above_it_or_beside_it():
    wrong = sorted(f"{module} imports {target}" for module, targets in _graph().items() for target in targets
                   if not target.startswith("freshvec.") or
                   (_part(target) != _part(module) and _part(target) not in ALLOWED[_part(module)]))
    assert wrong == []


def test_no_import_cycles_between_modules():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_every_package_folder_is_installed():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(["freshvec", *p.parent.relative_to(ROOT).parts])
               for part in ALLOWED for p in (ROOT / part).rglob("__init__.py")}
    assert set(tool["packages"]) == folders
    assert tool["package-dir"] == {f"freshvec.{part}": part for part in ALLOWED}


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_installed_under_one_name(part, tmp_path):
    """From outside the checkout only `freshvec.<part>` imports; the bare folder name does not."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (f"import importlib.util as u; import freshvec.{part}; "
             f"print(u.find_spec({part!r}) is None)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True", f"`import {part}` works outside the checkout"
