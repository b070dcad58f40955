"""The layers hold: the core imports nothing of the service or of HTTP (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = ("aiohttp", "antaca_api", "pyiso8583")


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_the_core_imports_neither_the_service_nor_http():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path)
            if name.split(".")[0] in FORBIDDEN_IN_CORE)
        for path in (ROOT / "antaca_auth").rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}
