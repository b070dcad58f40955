"""Endpoint modules; importing one declares its routes."""

import importlib

MODULES = ("admin", "balances", "cards", "corporations", "customers", "devices", "docs", "network", "partners",
           "programs", "public")


def load_all() -> None:
    """Declare every endpoint (idempotent: a module is imported once)."""
    for name in MODULES:
        importlib.import_module(f"antaca_api.routes.{name}")
