"""What the core reports as it works, for whoever watches (antaca_api/metrics.py: Prometheus).

The core knows nothing of metrics libraries: it calls these hooks, which do nothing by default.
A hook runs on the engine's hot path, so an implementation must be cheap and must not raise.
Counts the engine keeps anyway (stand-ins by cause, late answers, queue depth) are read by the
watcher when it is asked (`AuthorizationEngine.statistics`), costing the hot path nothing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from antaca_auth.decision import AuthorizationResult


class EngineObserver:
    """The authorization engine's hooks."""

    def answered(self, network_id: uuid.UUID, result: AuthorizationResult, seconds: float) -> None:
        """An authorization was answered `seconds` after it arrived."""

    def outcome_unknown(self, network_id: uuid.UUID) -> None:
        """An authorization got no answer: its batch may or may not have committed."""

    def batch_committed(self, size: int, seconds: float) -> None:
        """A batch of `size` authorizations was decided, written and committed in `seconds`."""


class JobObserver:
    """The background jobs' hooks (antaca_auth/periodic.py)."""

    def job_ran(self, job: str, seconds: float, failed: bool) -> None:
        """One pass of `job` ended, failed or not."""


NO_ENGINE_OBSERVER = EngineObserver()
