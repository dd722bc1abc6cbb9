"""The package's layers, written once: a module imports its own subpackage and the layers below it, never a
layer above or a sibling of its own layer, and no import cycle exists. Imports inside functions count: a lazy
import is still an arrow. Read from the source with `ast`, so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO

LAYERS: list[set[str]] = [
    {"config", "runtime"},  # frozen specs, spaces, experiment files / the process and the machine
    {"data", "metrics"},  # examples, tokenization, batching / task metrics as local evaluate modules
    {"trial"},  # a TrialConfig in, a TrialResult out; no Optuna, no W&B
    {"search"},  # the Optuna side: studies, the sweep loop, workers, recovery, records, the study read back
    {"evidence"},  # compare, confirm, validate, statistics, recommend
    {"publish"},  # plots, report, documents, the W&B summary run
    {"advise"},  # retrieval vs fine-tuning
    {"cli", "__main__", "api"},  # the command line and the Python API it calls (one unit, the top)
]
"""Bottom first. A module in layer i may import its own subpackage and any package of a layer below i."""

PACKAGE = REPO / "harness"


def unit(module: str) -> str:
    """The subpackage a module belongs to (`harness.search.sweep` -> `search`); the command line (harness/cli,
    __main__) and the Python API it calls (harness/api) are one unit, `top`."""
    parts = module.split(".")
    if parts[1] in ("api", "cli"):
        return "top"
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[1]).is_dir() else "top"


def layer_of(module: str) -> int:
    """The layer of `harness.<top>...`: the index of the set in LAYERS that names <top>."""
    top = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: harness/{top} is in no layer; add it to LAYERS in tests/test_layers.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The harness modules a source imports, anywhere in it (top level, functions, TYPE_CHECKING blocks),
    resolved to the most specific known module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("harness") and name != module:
                found.add(name)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the harness modules it imports."""
    paths = {module_name(p): p for p in root.rglob("*.py") if "modules" not in p.relative_to(root).parts[:-1]}
    known = set(paths)
    return {name: imports_of(path.read_text(), name, path.name == "__init__.py", known)
            for name, path in paths.items()}


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up a layer or across to a sibling package of the same layer."""
    bad = []
    for module, targets in graph.items():
        if module == "harness":
            continue
        for target in targets:
            if target == "harness":
                continue
            if unit(module) != unit(target) and layer_of(target) >= layer_of(module):
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def longest_chain(graph: dict[str, set[str]], start: str) -> list[str]:
    """The longest import chain from `start` (the graph has no cycles)."""
    memo: dict[str, list[str]] = {}

    def walk(node: str) -> list[str]:
        if node not in memo:
            memo[node] = [node] + max((walk(n) for n in graph.get(node, ())), key=len, default=[])
        return memo[node]

    return walk(start)


GRAPH = import_graph()


def test_no_module_imports_a_higher_layer_or_a_sibling_package() -> None:
    assert wrong_way(GRAPH) == []


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_every_module_lives_in_a_subpackage_whose_docstring_names_its_job_and_its_imports() -> None:
    loose = [m for m in GRAPH if m.count(".") == 1 and m.split(".")[1] not in ("cli", "__main__")
             and not (PACKAGE / m.split(".")[1]).is_dir()]
    assert loose == [], "modules at the top of harness/ outside any subpackage"
    for names in LAYERS:
        for name in names - {"cli", "__main__"}:
            doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())) or ""
            assert len(doc) > 80, f"harness/{name}/__init__.py: say what the subpackage does"
            if name not in ("data", "metrics"):  # their docstrings predate the layers and list their modules
                assert "May import" in doc, f"harness/{name}/__init__.py: say what it may import"


def test_from_the_command_line_to_the_floor_is_at_most_eight_layers() -> None:
    chain = longest_chain(GRAPH, "harness.cli")
    # `harness` itself (its lazy names lead to the API) counts as the top layer
    layers_crossed = [layer_of(m) if "." in m else len(LAYERS) - 1 for m in chain]
    distinct = [name for i, name in enumerate(layers_crossed) if i == 0 or name != layers_crossed[i - 1]]
    assert len(LAYERS) <= 8 and len(distinct) <= 8, " -> ".join(chain)


def test_the_check_catches_a_wrong_way_import_and_a_cycle(tmp_path: Path) -> None:
    """A deliberate mistake in each direction is found: config importing trial (up), data importing metrics
    (across), and a lazy import inside a function that closes a cycle."""
    up = "def f():\n    from harness.trial.models import resolve_model\n"
    known = set(GRAPH)
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["harness.config.space"] |= imports_of(up, "harness.config.space", False, known)
    graph["harness.data.load"] |= imports_of("from harness.metrics import registry\n", "harness.data.load", False,
                                             known)
    assert wrong_way(graph) == ["harness.config.space -> harness.trial.models",
                                "harness.data.load -> harness.metrics.registry"]
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["harness.config.errors"] |= imports_of("from . import space\n", "harness.config.errors", False, known)
    found = cycles(graph)
    assert len(found) == 1 and {"harness.config.errors", "harness.config.space"} <= set(found[0]), found


@pytest.mark.parametrize("name", ["harness.publish.report", "harness.search.study"])
def test_a_relative_import_resolves_to_the_module_it_names(name: str) -> None:
    assert imports_of("from ..config import space\n", name, False, set(GRAPH)) == {"harness.config.space"}
