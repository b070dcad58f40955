"""Endpoints: docs."""
