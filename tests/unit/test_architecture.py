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


# The HTTP layer: the only modules that may raise ApiError or hold HTTP statuses.
HTTP_LAYER = {"app.py", "routing.py", "channels.py", "jwe.py", "openapi.py", "errors.py",
              "server.py", "cli.py", "background_cpu.py", "schema.py", "services.py", "settings.py"}
SQL_WORDS = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM")


def domain_modules() -> list[Path]:
    """antaca_api's modules outside the HTTP layer, the routes and the ISO 8583 front door."""
    return [path for path in (ROOT / "antaca_api").glob("*.py") if path.name not in HTTP_LAYER]


def test_domain_modules_raise_no_http_errors():
    import importlib

    from antaca_api.errors import ApiError

    offenders = []
    for path in domain_modules():
        module = importlib.import_module(f"antaca_api.{path.stem}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                error = getattr(module, raised.id, None) if isinstance(raised, ast.Name) else None
                if isinstance(error, type) and issubclass(error, ApiError):
                    offenders.append(f"{path.name}:{node.lineno} {raised.id}")
    assert offenders == []


def test_every_domain_error_has_its_status_in_the_one_table():
    from antaca_api import domain_errors
    from antaca_api.errors import DOMAIN_ERROR_STATUS

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(c) for c in found)) if found else found

    declared = {cls for cls in subclasses(domain_errors.DomainError)
                if cls.__module__ == domain_errors.__name__}
    assert declared - set(DOMAIN_ERROR_STATUS) == set()
    assert all(400 <= status < 600 for status in DOMAIN_ERROR_STATUS.values())


def test_route_handlers_hold_no_sql():
    offenders = [f"{path.name}:{number}"
                 for folder in ("routes", "panel")  # the panel's views call the same domain
                 for path in (ROOT / "antaca_api" / folder).glob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if any(word in line for word in SQL_WORDS)]
    assert offenders == []
