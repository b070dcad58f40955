"""Endpoint modules; importing one declares its routes."""
