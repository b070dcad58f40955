"""Rate limits and lockouts on the endpoints that guess at secrets (docs/api.md, "Rate limits").

Administrator sign-in, customer session creation, device pairing, step-up and card data
retrieval each have a `Policy`: at most `caller_attempts_max` requests per caller (the client's
address) and `account_attempts_max` per account (the e-mail, installation, customer or partner
the request is about) within `window_seconds`; past either, 429 with `Retry-After`. Failures
(wrong password, wrong installation secret, wrong pairing code, wrong application PIN, missing
step-up) are counted per account: `failures_max` of them within the window lock the account for
`lock_seconds`, whatever comes next, and the lockout is recorded in `security_events`.

The counters live in this process (`RateLimits`, one per service): with several service processes
behind a load balancer each counts alone, so a caller gets up to N times the limits. Lockouts are
recorded in PostgreSQL for the audit, not consulted from it. The counting itself (`Window`,
`Lockouts`) is pure: time is passed in.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from antaca_api.domain_errors import (
    AccountLocked,
    AppPinLocked,
    InvalidAppPin,
    InvalidCredentials,
    InvalidPairingCode,
    RateLimited,
    StepUpRequired,
)

# Keys each window remembers at most: the oldest are forgotten first (a flood of random e-mails
# costs memory only up to this).
tracked_keys_max = 100_000

# The failures that count towards a lockout (the caller guessed wrong).
FAILURES = (InvalidCredentials, InvalidPairingCode, InvalidAppPin, AppPinLocked, StepUpRequired)

RECORD_LOCKOUT = """
    INSERT INTO security_events (kind, policy, account, caller, locked_until)
    VALUES ('LOCKOUT', $1, $2, $3, now() + make_interval(secs => $4))"""
LOCKOUTS = """
    SELECT policy, account, caller, locked_until, created_at FROM security_events
    WHERE kind = 'LOCKOUT' AND account = $1 ORDER BY id DESC LIMIT $2"""


@dataclass(frozen=True)
class Policy:
    name: str
    caller_attempts_max: int
    account_attempts_max: int
    window_seconds: int
    failures_max: int  # failures per account within the window before it locks
    lock_seconds: int
    # The account a request is about, from its context and decoded body.
    account: Callable[[Any, Any], str]


def _customer(ctx: Any, _: Any) -> str:
    return f"customer:{ctx.customer.customer_id}"


def _card_holder(ctx: Any, _: Any) -> str:
    """The customer; for a partner's server, which fetches for all its customers, the card."""
    if ctx.customer is not None:
        return f"customer:{ctx.customer.customer_id}"
    return f"partner:{ctx.partner_id}:card:{ctx.request.match_info.get('cardId', '')}"


ADMIN_SIGN_IN = Policy("admin-sign-in", caller_attempts_max=60, account_attempts_max=10,
                       window_seconds=60, failures_max=5, lock_seconds=900,
                       account=lambda _, body: f"admin:{body.email.strip().lower()}")
CUSTOMER_SESSION = Policy("customer-session", caller_attempts_max=120, account_attempts_max=20,
                          window_seconds=60, failures_max=5, lock_seconds=900,
                          account=lambda _, body: f"installation:{body.installation_id}")
# A pairing code names no account before it matches: the caller is the account.
DEVICE_PAIRING = Policy("device-pairing", caller_attempts_max=30, account_attempts_max=30,
                        window_seconds=60, failures_max=10, lock_seconds=900,
                        account=lambda ctx, _: f"caller:{ctx.request.remote}")
STEP_UP = Policy("step-up", caller_attempts_max=60, account_attempts_max=10, window_seconds=60,
                 failures_max=10, lock_seconds=900, account=_customer)
CARD_DATA = Policy("card-data", caller_attempts_max=600, account_attempts_max=30,
                   window_seconds=60, failures_max=10, lock_seconds=900, account=_card_holder)

# (method, path) of each limited route; a route with several paths has each.
POLICIES: dict[tuple[str, str], Policy] = {
    ("POST", "/admin/sessions"): ADMIN_SIGN_IN,
    ("POST", "/customers/sessions"): CUSTOMER_SESSION,
    ("POST", "/customers/devices/pair"): DEVICE_PAIRING,
    ("POST", "/customers/me/step-up"): STEP_UP,
    ("GET", "/customers/me/cards/{cardId}"): CARD_DATA,
    ("GET", "/secure/customers/{customerId}/cards/{cardId}"): CARD_DATA,
    ("GET", "/secure/cards/{cardId}"): CARD_DATA,
}


def policy_of(method: str, path: str) -> Policy | None:
    return POLICIES.get((method, path))


class Window:
    """Events per key within a sliding window of `window_seconds`, at most `tracked_keys_max`
    keys (least recently seen forgotten first)."""

    def __init__(self, window_seconds: float, keys_max: int = tracked_keys_max) -> None:
        self.window_seconds = window_seconds
        self.keys_max = keys_max
        self.events: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict())

    def count(self, key: str, now: float) -> int:
        events = self.events.get(key)
        if events is None:
            return 0
        while events and events[0] <= now - self.window_seconds:
            events.popleft()
        return len(events)

    def add(self, key: str, now: float) -> None:
        events = self.events.get(key)
        if events is None:
            events = self.events[key] = collections.deque()
            if len(self.events) > self.keys_max:
                self.events.popitem(last=False)
        else:
            self.events.move_to_end(key)
        events.append(now)

    def retry_after(self, key: str, now: float) -> int:
        """Whole seconds until the oldest event of the key leaves the window (at least 1)."""
        events = self.events.get(key)
        if not events:
            return 1
        return max(1, math.ceil(events[0] + self.window_seconds - now))

    def forget(self, key: str) -> None:
        self.events.pop(key, None)


def admit(window: Window, key: str, attempts_max: int, now: float) -> int | None:
    """Count one attempt for the key; None when admitted, else the seconds to wait (the refused
    attempt is not counted)."""
    if window.count(key, now) >= attempts_max:
        return window.retry_after(key, now)
    window.add(key, now)
    return None


@dataclass
class PolicyState:
    callers: Window
    accounts: Window
    failures: Window
    locked_until: collections.OrderedDict[str, float] = field(
        default_factory=collections.OrderedDict)


class RateLimits:
    """Each policy's windows and lockouts, for one service process."""

    def __init__(self) -> None:
        self.states: dict[str, PolicyState] = {}

    def _state(self, policy: Policy) -> PolicyState:
        state = self.states.get(policy.name)
        if state is None:
            state = self.states[policy.name] = PolicyState(
                Window(policy.window_seconds), Window(policy.window_seconds),
                Window(policy.window_seconds))
        return state

    def check_caller(self, policy: Policy, caller: str, now: float) -> None:
        """Admit one attempt from the caller, or raise RateLimited with the wait."""
        wait = admit(self._state(policy).callers, caller, policy.caller_attempts_max, now)
        if wait is not None:
            raise RateLimited(retry_after_seconds=wait)

    def check_account(self, policy: Policy, account: str, now: float) -> None:
        """Admit one attempt on the account, or raise AccountLocked / RateLimited with the wait."""
        state = self._state(policy)
        until = state.locked_until.get(account)
        if until is not None:
            if until > now:
                raise AccountLocked(retry_after_seconds=math.ceil(until - now))
            del state.locked_until[account]
        wait = admit(state.accounts, account, policy.account_attempts_max, now)
        if wait is not None:
            raise RateLimited(retry_after_seconds=wait)

    def fail(self, policy: Policy, account: str, now: float) -> bool:
        """Count a failure; True when it locks the account (the caller records the lockout)."""
        state = self._state(policy)
        state.failures.add(account, now)
        if state.failures.count(account, now) < policy.failures_max:
            return False
        state.failures.forget(account)
        state.locked_until[account] = now + policy.lock_seconds
        if len(state.locked_until) > tracked_keys_max:
            state.locked_until.popitem(last=False)
        return True


Admit = Callable[[Any], None]


async def guarded(ctx: Any, policy: Policy, run: Callable[[Admit], Awaitable[Any]]) -> Any:
    """Run a limited request: its caller admitted now, its account once `run` knows it (it calls
    the admit function it is given with the decoded body); a failure counts towards the
    account's lockout, and the failure that locks it is recorded."""
    limits: RateLimits = ctx.services.rate_limits
    caller = ctx.request.remote or "unknown"
    limits.check_caller(policy, caller, time.monotonic())
    account: str | None = None

    def admit_account(body: Any) -> None:
        nonlocal account
        account = policy.account(ctx, body)
        limits.check_account(policy, account, time.monotonic())

    try:
        return await run(admit_account)
    except FAILURES:
        if account is not None and limits.fail(policy, account, time.monotonic()):
            await record_lockout(ctx.services.pool, policy, account, caller)
        raise


async def record_lockout(pool: asyncpg.Pool, policy: Policy, account: str, caller: str) -> None:
    """The lockout's audit row: which policy, which account, from which caller, until when."""
    await pool.execute(RECORD_LOCKOUT, policy.name, account, caller, float(policy.lock_seconds))


async def lockouts(pool: asyncpg.Pool, account: str, limit: int) -> list[asyncpg.Record]:
    """The latest lockouts of an account, newest first."""
    return await pool.fetch(LOCKOUTS, account, limit)
