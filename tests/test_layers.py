"""The layers of docs/architecture.md, kept by a test: every import (at the top of a module or inside a
function) goes down the picture or stays in its layer, and no set of modules imports itself in a loop."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first, as docs/architecture.md draws them; a module belongs to the longest prefix that names it.
LAYERS = [
    ("plain data", ["i3d.networks.architecture", "i3d.errors", "i3d.settings", "i3d.streams", "i3d.lists", "i3d.files",
                    "i3d.batching", "i3d.download", "i3d.versions", "i3d.devices", "i3d.video.recipe",
                    "i3d.weights.remote"]),
    ("recipe", ["i3d.video"]),
    ("networks", ["i3d.networks", "i3d.weights"]),
    ("runtimes", ["i3d.runtimes"]),
    ("one way in", ["i3d.factory"]),
    ("capabilities", ["i3d.predict", "i3d.timeline", "i3d.render", "i3d.serve", "i3d.features", "i3d.fvd",
                      "i3d.evaluate", "i3d.train", "i3d.export", "i3d.visualize", "i3d.bench", "i3d.environment"]),
    ("commands", ["i3d.cli"]),
    ("package", ["i3d"]),  # the package's own names, imported on first use
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: place it in LAYERS and in docs/architecture.md"
    return max(matches)[1]


def imports_of(module: str) -> set[str]:
    """Every i3d module it imports: top-level, inside functions, and names given to importlib as text."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value \
                and node.value in MODULES:
            found.add(node.value)  # importlib.import_module("i3d.x") and the packages' lazy name tables
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    upward = [f"{other} ({LAYERS[layer_of(other)][0]})" for other in sorted(GRAPH[module])
              if layer_of(other) > layer_of(module)]
    assert not upward, f"{module} ({LAYERS[layer_of(module)][0]}) imports {', '.join(upward)}"


def test_no_import_loops():
    """Tarjan's strongly connected components: any with more than one module is a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in GRAPH[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not loops, f"import loops: {loops}"


def test_the_plain_network_and_the_algorithms_stand_alone():
    """The network file imports no inference form; TV-L1's algorithm and its kernel loader do not know each
    other (the build, above both, imports them); weights point at their recipe, never the reverse."""
    assert GRAPH["i3d.networks.inception"] <= {"i3d.networks.architecture"}
    assert "i3d.video.flow.built_kernels" not in GRAPH["i3d.video.flow.tvl1_torch"]
    assert "i3d.video.flow.tvl1_torch" not in GRAPH["i3d.video.flow.built_kernels"]
    assert not any(name.startswith("i3d.weights") for name in GRAPH["i3d.video.recipe"] | GRAPH["i3d.video.preset"])


def test_the_checker_sees_a_function_level_import(tmp_path):
    """The test above would pass on nothing if it missed imports inside functions: it does not."""
    assert "i3d.video.preset" in GRAPH["i3d.weights.registry"]  # imported inside WeightsInfo.transforms
    assert "i3d.weights.cross_modal" in GRAPH["i3d.factory"]  # imported inside create_model
