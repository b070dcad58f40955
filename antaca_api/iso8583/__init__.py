"""The ISO 8583:1987 network channel: a TCP listener in front of the authorization engine."""
