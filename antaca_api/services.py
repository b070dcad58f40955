"""What handlers share for the life of the application."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from jwcrypto.jwk import JWK

from antaca_api.background_cpu import BackgroundCpu
from antaca_api.credentials import CredentialCache
from antaca_api.kyc import KycProvider
from antaca_api.metrics import Metrics
from antaca_api.pki import CertificateAuthority
from antaca_api.rate_limits import RateLimits
from antaca_api.settings import Settings
from antaca_auth.cardkeys import CardKeys
from antaca_auth.engine import AuthorizationEngine
from antaca_auth.followups import FollowUps
from antaca_auth.ledger import Ledger


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    pool: asyncpg.Pool
    ledger: Ledger
    settings: Settings
    jwe_key: JWK  # Antaca's RSA key pair (antaca_api/jwe.py)
    ca: CertificateAuthority | None = None  # when mutual TLS is configured
    kyc_provider: KycProvider | None = None
    card_keys: CardKeys | None = None
    engine: AuthorizationEngine | None = None
    follow_ups: FollowUps | None = None  # reversals, clearings and force posts (network channel)
    clock: Callable[[], datetime] = field(default=utc_now)
    credentials: CredentialCache = field(default_factory=CredentialCache)  # client certificate rows
    # Background work started by requests (asynchronous card generation); kept so it is not
    # garbage-collected and can be awaited on shutdown.
    tasks: set[asyncio.Task] = field(default_factory=set)
    # CPU-heavy request work (password hashing, JWE's RSA) runs here, off the event loop.
    background_cpu: BackgroundCpu = field(default_factory=BackgroundCpu)
    # The authorization engine's own connections, and a ledger on them: the network channel works
    # on these, so no other channel can take them (antaca_api/server.py sizes them). None: the
    # shared pool.
    authorization_pool: asyncpg.Pool | None = None
    authorization_ledger: Ledger | None = None
    # Prometheus metrics (antaca_api/metrics.py): the engine's and the jobs' observer.
    metrics: Metrics = field(default_factory=Metrics)
    # The rate limits' counters and lockouts of this process (antaca_api/rate_limits.py).
    rate_limits: RateLimits = field(default_factory=RateLimits)
    # The sandbox's own network (antaca_api/sandbox.py), once its first simulation set it up.
    sandbox_network: Any = None

    def __post_init__(self) -> None:
        if self.authorization_pool is None:
            self.authorization_pool = self.pool
        if self.authorization_ledger is None:
            same = self.authorization_pool is self.pool
            self.authorization_ledger = self.ledger if same else Ledger(self.authorization_pool)

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
