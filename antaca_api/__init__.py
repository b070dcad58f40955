"""Antaca's HTTP API: channels, security, card and balance management."""
