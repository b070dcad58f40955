"""Endpoints: corporations."""
