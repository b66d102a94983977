"""Dependencies that run one way, read from the imports (issue 26), function-level imports
included: every import goes down the layers below (or stays inside its layer), so there is no
import cycle. From the bottom: the common layer; configs, checkpoint formats, losses and the
stage registry (which names its stages' functions as strings); the training scaffold (engine);
data; models; evaluation; the stages (pretraining, supervised, view learning) and Detectron2's
side; the sweep; SLURM; the demo's world; the commands (the tools) on top."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pretrain", "detection", "slurm")
LAYERS = (
    {"pretrain.common"},
    {
        "pretrain.config",
        "pretrain.formats",
        "pretrain.losses",
        "pretrain.entropy_reconstruction",
        "pretrain.stages",
    },
    {"pretrain.engine"},
    {"pretrain.data"},
    {"pretrain.models"},
    {"pretrain.evaluation"},
    {
        "pretrain.pretraining",
        "pretrain.supervised",
        "pretrain.finetune",
        "pretrain.views_learned",
        "detection",
    },
    {"pretrain.sweep_report"},
    {"pretrain.sweep"},
    {"slurm"},
    {"pretrain.demo"},  # the demo world's generators, read only by the demo's commands
    {"pretrain.commands"},
)


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
                        base = here[: len(here) - (node.level - 1)]
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


def level(layer_name: str) -> int:
    for height, names in enumerate(LAYERS):
        if layer_name in names:
            return height
    raise AssertionError(f"{layer_name} is in no layer: place it in LAYERS")


def test_every_import_goes_down_the_layers():
    upward = sorted(
        f"{importer} imports {target}"
        for importer, targets in layer_graph().items()
        for target in targets
        if level(target) > level(importer)
        or (level(target) == level(importer) and target != importer)
    )
    assert upward == [], upward


def test_there_is_no_import_cycle():
    assert cycles(layer_graph()) == []


def test_the_layer_check_sees_function_level_imports():
    """An import inside a function counts as much as one at the top: data/views.py imports the
    learned views only where DATA.LEARNED_VIEWS asks for them."""
    assert "pretrain.data.learned_views" in module_imports()["pretrain.data.views"]
