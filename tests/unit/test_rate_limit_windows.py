"""The rate limits' counting, without a database or a clock (antaca_api/rate_limits.py)."""

from __future__ import annotations

import pytest

from antaca_api import passwords, rate_limits
from antaca_api.domain_errors import AccountLocked, RateLimited


def test_a_window_admits_up_to_its_maximum_then_says_how_long_to_wait():
    window = rate_limits.Window(60)
    assert [rate_limits.admit(window, "k", 3, now) for now in (0, 10, 20)] == [None] * 3
    assert rate_limits.admit(window, "k", 3, 30) == 30  # the event at 0 leaves at 60
    assert rate_limits.admit(window, "k", 3, 60) is None  # it left
    assert rate_limits.admit(window, "other", 3, 30) is None


def test_a_window_forgets_its_least_recent_keys_past_its_maximum():
    window = rate_limits.Window(60, keys_max=2)
    for key in ("a", "b", "c"):
        window.add(key, 0)
    assert set(window.events) == {"b", "c"}


def test_failures_lock_an_account_until_the_lock_ends():
    limits = rate_limits.RateLimits()
    policy = rate_limits.ADMIN_SIGN_IN
    locks = [limits.fail(policy, "admin:a", float(now)) for now in range(policy.failures_max)]
    assert locks == [False] * (policy.failures_max - 1) + [True]
    with pytest.raises(AccountLocked) as locked:
        limits.check_account(policy, "admin:a", 10.0)
    assert locked.value.retry_after_seconds == policy.lock_seconds - 10 + policy.failures_max - 1
    limits.check_account(policy, "admin:b", 10.0)  # another account is not locked
    limits.check_account(policy, "admin:a", 10.0 + policy.lock_seconds)  # the lock ended


def test_the_caller_limit_is_counted_apart_from_the_account():
    limits = rate_limits.RateLimits()
    policy = rate_limits.DEVICE_PAIRING
    for _ in range(policy.caller_attempts_max):
        limits.check_caller(policy, "10.0.0.1", 0.0)
    with pytest.raises(RateLimited) as limited:
        limits.check_caller(policy, "10.0.0.1", 1.0)
    assert limited.value.retry_after_seconds == policy.window_seconds - 1
    limits.check_caller(policy, "10.0.0.2", 1.0)


def test_argon2id_hashes_verify_and_scrypt_ones_ask_for_an_upgrade():
    stored = passwords.hash_password("a long password")
    assert stored.startswith(passwords.ARGON2_PREFIX)
    assert passwords.verify_password("a long password", stored)
    assert not passwords.verify_password("another password", stored)
    assert not passwords.needs_rehash(stored)
    old = passwords.hash_scrypt("a long password", n=2**12)
    assert passwords.verify_password("a long password", old)
    assert not passwords.verify_password("another password", old)
    assert passwords.needs_rehash(old)
    assert not passwords.verify_password("a long password", "garbage$1$2")
