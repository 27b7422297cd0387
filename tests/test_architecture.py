"""The package's shape, checked from its source: the import graph has no cycle, and a module imports another
inside a function only to keep a heavy library (TensorFlow, Keras, scikit-learn, matplotlib, ...) out of
`cnnctl --help`. No Keras private member is overridden outside the one module that documents why."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cnnctl"
# What `cnnctl --help` may import: the standard library and the CLI framework. Anything else is "heavy".
LIGHT_THIRD_PARTY = {"typer", "click"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [resolve_from(node.module, alias.name) for alias in node.names]
        else:
            continue
        found += [(name, id(node) not in nested, node.lineno) for name in names]
    return found


def resolve_from(module: str, name: str) -> str:
    """`from cnnctl.data import dataset` imports the module cnnctl.data.dataset; `from x import y` otherwise x."""
    candidate = f"{module}.{name}"
    return candidate if candidate in MODULES else module


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def cnnctl_edges(name: str, top_level_only: bool = False) -> set[str]:
    return {
        target for target, top, _ in GRAPH[name] if target in MODULES and target != name and (top or not top_level_only)
    }


def is_heavy(name: str, seen: frozenset = frozenset()) -> bool:
    """A third-party library other than typer, or a cnnctl module that imports one at module level."""
    root = name.split(".")[0]
    if root != "cnnctl":
        return root not in sys.stdlib_module_names and root not in LIGHT_THIRD_PARTY
    if name not in MODULES or name in seen:
        return False
    return any(is_heavy(target, seen | {name}) for target, top, _ in GRAPH[name] if top)


def find_cycle(edges=cnnctl_edges, nodes=None) -> list[str]:
    """A cycle of the import graph (a list of modules, the first repeated at its end), or [] when there is none.
    `edges(node)` gives a node's imports and `nodes` the nodes to start from (default: cnnctl's modules)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges(node)):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(MODULES if nodes is None else nodes):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_import_graph_has_no_cycle():
    # Imports inside functions count too: hiding a cycle behind a late import is still a cycle.
    assert find_cycle() == []


def test_imports_inside_functions_only_defer_heavy_libraries():
    deferred_light = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}"
        for name, imports in GRAPH.items()
        for target, top, line in imports
        if not top and not is_heavy(target)
    ]
    assert deferred_light == []


def test_the_checker_sees_a_cycle_and_a_light_deferred_import():
    # The two tests above would pass vacuously if the graph were empty or every module counted as heavy.
    assert {"cnnctl.cli.app", "cnnctl.training.loop", "cnnctl.data.dataset"} <= set(MODULES)
    assert "cnnctl.errors" in cnnctl_edges("cnnctl.cli.base")
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(lambda node: graph[node], graph) == ["a", "b", "c", "a"]
    assert find_cycle(lambda node: graph[node] - {"a"}, graph) == []
    assert not is_heavy("cnnctl.errors") and not is_heavy("signal") and is_heavy("keras")
    assert is_heavy("cnnctl.model.build") and is_heavy("cnnctl.data.dataset")


# The packages in pipeline order, written down once (docs/development.md shows the same list): a module imports only
# from its own package or from packages before it, so data flows one way, from the config to the command line.
PACKAGE_ORDER = (
    "errors",
    "files",
    "runtime",
    "runs",
    "config",
    "data",
    "model",
    "training",
    "evaluation",
    "reporting",
    "workflows",
    "api",
    "cli",
    "__main__",
)


def package_of(module: str) -> str:
    """cnnctl.data.dataset → "data"; cnnctl.errors → "errors"; the package root itself → "" (it only re-exports)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_edges(module_edges=cnnctl_edges, modules=None) -> dict[str, set[str]]:
    """The import graph between packages: package → the packages its modules import (in-function imports too)."""
    graph: dict[str, set[str]] = {}
    for name in MODULES if modules is None else modules:
        source = package_of(name)
        if source:
            graph.setdefault(source, set())
            graph[source] |= {package_of(target) for target in module_edges(name) if package_of(target)} - {source}
    return graph


def against_the_order(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: index for index, name in enumerate(PACKAGE_ORDER)}
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        if rank[target] > rank[source]
    )


def test_packages_import_only_packages_before_them_in_the_pipeline():
    graph = package_edges()
    assert set(graph) == set(PACKAGE_ORDER)  # a new package gets its place in the order
    assert against_the_order(graph) == []
    assert find_cycle(lambda node: graph[node], graph) == []


def test_the_package_checker_sees_an_import_against_the_order_and_its_cycle():
    # A real cycle: training imports config; let config import training (as config/schema.py once imported data).
    real = package_edges()
    assert "config" in real["training"] and "errors" in real["cli"]
    with_cycle = {**real, "config": real["config"] | {"training"}}
    assert against_the_order(with_cycle) == ["config imports training"]
    cycle = find_cycle(lambda node: with_cycle[node], with_cycle)
    assert cycle[0] == cycle[-1] and {"config", "training"} <= set(cycle)
    # and one module's late import is enough to make a package edge
    edges = package_edges(lambda name: {"cnnctl.workflows.train"} if name == "cnnctl.model.build" else set())
    assert against_the_order(edges) == ["model imports workflows"]


# A module longer than this is split by responsibility (a reader holds one module in their head).
MAX_MODULE_LINES = 420


def test_no_module_is_too_long_to_hold_in_ones_head():
    long = {
        f"{path.relative_to(PACKAGE.parent)}: {count} lines"
        for path in MODULES.values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == set()


# The command line is a shell over the front door: its modules reach the library through cnnctl.api alone (plus the
# error classes it maps to exit codes, and its own console module, which renders what the API returns).
CLI_MAY_IMPORT = {"cnnctl.api", "cnnctl.errors"}
CONSOLE_MAY_IMPORT = {"cnnctl.runs.contract", "cnnctl.runtime", "cnnctl.errors"}


def test_the_command_line_reaches_the_library_through_the_api_only():
    cli = {name for name in MODULES if name.startswith("cnnctl.cli")}
    assert {"cnnctl.cli.app", "cnnctl.cli.console"} <= cli
    crossings = []
    for name in sorted(cli):
        allowed = CONSOLE_MAY_IMPORT if name == "cnnctl.cli.console" else CLI_MAY_IMPORT | cli
        crossings += [
            f"{name}:{line} imports {target}"
            for target, _, line in GRAPH[name]
            if target.startswith("cnnctl") and target != "cnnctl" and target not in allowed
        ]
    assert crossings == []


def test_the_api_offers_every_command():
    """Each command of the command line has its function in cnnctl.api (the front door Python uses too), and
    `import cnnctl` offers it under the same name."""
    import cnnctl
    import cnnctl.api as api
    from cnnctl.cli.app import app

    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    function = {
        "runs": "list_runs",
        "cv": "cross_validate",
        "data": "describe_data",
        "filter": "filter_image",
        "lr-find": "lr_find",
    }
    names = [function.get(name, name) for name in sorted(commands)] + ["list_collections", "resume_tune"]
    missing = [name for name in names if not callable(getattr(api, name, None))]
    unexported = [name for name in names if getattr(cnnctl, name, None) is not getattr(api, name, None)]
    assert len(commands) >= 15 and missing == [] and unexported == []


def test_keras_private_members_are_touched_in_one_documented_module_only():
    # `self._x` on our own classes is fine; overriding or reading Keras' underscored API is not, except in
    # cnnctl/model/fused_batch_norm.py, which says which Keras version it was checked against.
    private = re.compile(r"\b(?:def\s+_(?!_)\w+\(self|model\._\w+|self\.model\._\w+|super\(\)\._(?!_)\w+)")
    allowed = {"cnnctl.model.fused_batch_norm"}
    offenders = []
    for name, path in MODULES.items():
        if name in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        keras_classes = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and any("keras" in ast.unparse(base) for base in node.bases)
        ]
        for node in keras_classes:
            offenders += [
                f"{name}.{node.name}: {match.group(0)}"
                for match in private.finditer(ast.get_source_segment(text, node) or "")
            ]
        offenders += [f"{name}: {match.group(0)}" for match in re.finditer(r"\bmodel\._\w+", text)]
    assert offenders == []


def test_every_package_index_lists_its_modules():
    """Each sub-package's docstring is its table of contents: it names every module in it, and none that is gone."""
    problems = []
    for package in sorted(path.parent for path in PACKAGE.glob("*/__init__.py")):
        index = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
        modules = {path.name for path in package.glob("*.py") if path.name != "__init__.py"}
        listed = set(re.findall(r"^\s*(\w+\.py)\b", index, flags=re.M))
        problems += [f"{package.name}/: {name} not listed" for name in sorted(modules - listed)]
        problems += [f"{package.name}/: lists {name}, which does not exist" for name in sorted(listed - modules)]
    assert problems == []


def test_module_docstrings_carry_no_step_labels():
    """Stage labels such as "step 3c" went stale (two modules each claimed 3c and 3e): the package index lists
    the modules instead."""
    labelled = [
        name for name, path in MODULES.items() if re.search(r"\bstep \d[a-z]", path.read_text(encoding="utf-8"))
    ]
    assert labelled == []
