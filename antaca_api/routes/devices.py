"""Endpoints: devices."""
