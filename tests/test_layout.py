"""The layout's rules that a reader relies on, checked over the app code's syntax trees."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("collabadmin", "common", "failover", "sessions")


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
