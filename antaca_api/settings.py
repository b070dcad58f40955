"""Service settings from the environment."""

from __future__ import annotations

import os

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    sweep_interval: float = 1.0  # seconds between expiry sweeps of pending transfers

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            host=os.environ.get("ANTACA_HOST", "127.0.0.1"),
            port=int(os.environ.get("ANTACA_PORT", "8080")),
            sweep_interval=float(os.environ.get("ANTACA_SWEEP_INTERVAL", "1.0")),
        )
