"""Antaca's ledger core and authorization engine."""
