"""Endpoint modules; importing one declares its routes."""

import importlib

MODULES = ("admin", "alerts", "balances", "cards", "controls", "corporations", "customer_service",
           "customers", "devices", "docs", "fees", "network", "network_keys", "partner_balances",
           "partners", "programs", "public", "sandbox", "step_up", "summaries", "transfers", "webhooks")


def load_all() -> None:
    """Declare every endpoint (idempotent: a module is imported once)."""
    for name in MODULES:
        importlib.import_module(f"antaca_api.routes.{name}")
