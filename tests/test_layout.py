"""The layout's rules that a reader relies on, checked over the app code's syntax trees."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("collabadmin", "common", "configsync", "failover", "sessions")


def app_modules() -> list[tuple[Path, ast.Module]]:
    """Every module of the apps, migrations aside."""
    paths = sorted(p for app in APPS for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts)
    return [(path, ast.parse(path.read_text(), str(path))) for path in paths]


def defined_names(node: ast.AST) -> list[str]:
    """The names a class definition or an assignment at ``node`` defines."""
    if isinstance(node, ast.ClassDef):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return [getattr(target, "id", "") for target in targets]


def test_one_actor_type_and_every_system_actor_named_in_one_place():
    definitions, system_strings = [], []
    for path, tree in app_modules():
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if "Actor" in defined_names(node):
                definitions.append(str(where))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("system:"):
                system_strings.append(f"{where}:{node.lineno} {node.value}")
    assert definitions == ["common/actors.py"]
    assert all(line.startswith("common/actors.py:") for line in system_strings), system_strings


def imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def test_services_never_import_tasks():
    # Follow-up work is sent by task name through common/outbox.py; the tasks import the
    # services at the top of their modules.
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno} {module}"
        for path, tree in app_modules()
        if "services" in path.parts
        for node in ast.walk(tree)
        for module in imported_modules(node)
        if module.endswith(".tasks") or module in ("failover.tasks", "sessions.tasks")
    ]
    assert offenders == []


# Imports inside a function: only the process runner's, which runs before Django is set up
# (it sets it up itself, then reads the models). The list may only shrink.
KNOWN_LATE_IMPORTS = {
    "collabadmin/stack.py:_web_nodes",
    "collabadmin/stack.py:_simulators",
}


def test_no_new_import_inside_a_function():
    late = set()
    for path, tree in app_modules():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if any(m.split(".")[0] in APPS for m in imported_modules(node)):
                    late.add(f"{path.relative_to(ROOT)}:{function.name}")
    # An app's ready() is where Django wants imports that need the app registry.
    late = {name for name in late if not name.endswith("apps.py:ready")}
    assert late - KNOWN_LATE_IMPORTS == set(), "import at the top of the module, or cut the cycle"
    assert KNOWN_LATE_IMPORTS - late == set(), "gone: take it off the list"


MAX_FUNCTION_LINES = 60


def test_no_function_over_sixty_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in app_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
