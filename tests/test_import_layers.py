"""Dependencies that run one way, read from the imports (issue 26): the common layer at the
bottom imports nothing of the project above it; configs and checkpoint formats sit just above it;
no library code imports the commands (the stage orchestration on top); and the import cycles
between pretrain's subpackages do not grow. Today one cycle remains (data, engine, evaluation,
models, views_learned: e.g. data reads which methods take an index, the trainer runs the kNN
monitor); it may shrink, never take in another package."""
from __future__ import annotations

import ast
import collections
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pretrain", "detection", "slurm")
KNOWN_CYCLE = {"pretrain.data", "pretrain.engine", "pretrain.evaluation", "pretrain.models",
               "pretrain.views_learned"}


def module_imports() -> dict[str, set[str]]:
    """{module: the modules it imports}, relative imports resolved, for the project's packages."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for package in PACKAGES:
        for path in sorted((Path(REPO) / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            parts = parts[:-1] if is_init else parts
            here = parts if is_init else parts[:-1]
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = here[:len(here) - (node.level - 1)]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    found[".".join(parts)].add(target)
                elif isinstance(node, ast.Import):
                    found[".".join(parts)].update(alias.name for alias in node.names)
    return found


def layer(module: str) -> str:
    """pretrain.<subpackage or module>, detection or slurm."""
    parts = module.split(".")
    return f"pretrain.{parts[1]}" if parts[0] == "pretrain" and len(parts) > 1 else parts[0]


def layer_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for module, targets in module_imports().items():
        for target in targets:
            if target.split(".")[0] in PACKAGES and layer(target) != layer(module):
                graph[layer(module)].add(layer(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one layer (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(group)

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_common_layer_imports_nothing_above_it():
    graph = layer_graph()
    assert graph.get("pretrain.common", set()) == set()
    for layer_name in ("pretrain.config", "pretrain.formats", "pretrain.stages"):
        assert graph.get(layer_name, set()) <= {"pretrain.common"}, layer_name


def test_no_library_code_imports_the_commands():
    graph = layer_graph()
    importers = {name for name, targets in graph.items() if "pretrain.commands" in targets}
    assert importers == set(), importers


def test_import_cycles_do_not_grow():
    found = cycles(layer_graph())
    assert all(group <= KNOWN_CYCLE for group in found), found
