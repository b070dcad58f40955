"""Step-up before sensitive data: the customer's application PIN and the proofs it buys.

The product description asks for an additional confirmation by the user (application PIN or
biometrics) before full card data is shown or a PIN is set. A customer sets an application PIN
(`PUT /customers/me/app-pin`); `POST /customers/me/step-up` with it returns a step-up proof valid
for `STEP_UP_PROOF_SECONDS`, which the app sends as the `Step-Up-Token` header of the customer
channel's sensitive requests (full card data, CVV reset, PIN set). The partner channel is
unchanged: a partner's server confirms its user its own way.

The application PIN is never stored: only scrypt of it (a slow hash, one salt per PIN) keyed with
HMAC-SHA256 under a key derived from the card keys' PIN key, so a copy of the database alone
cannot be brute-forced. `APP_PIN_TRIES_MAX` wrong tries in a row lock it for
`APP_PIN_LOCK_MINUTES`; a right one resets the count. Whether a try passes is `judge_try`, a
pure function.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from antaca_api.domain_errors import (
    AppPinLocked,
    AppPinNotSet,
    InvalidAppPin,
    InvalidPin,
    StepUpRequired,
)
from antaca_api.services import Services
from antaca_auth.cardstate import pin_problem

STEP_UP_PROOF_SECONDS = 300  # a proof's life: the description's "additional confirmation", fresh
APP_PIN_TRIES_MAX = 5  # wrong application PINs in a row before it locks
APP_PIN_LOCK_MINUTES = 30  # how long it stays locked
STEP_UP_HEADER = "Step-Up-Token"
PROOF_BYTES = 32
SALT_BYTES = 16
# scrypt parameters: 16 MiB and ~50 ms per try here; a PIN has few digits, so the keyed HMAC after
# it (the key is not in the database) is what makes an offline guess impossible.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 128 * SCRYPT_R * SCRYPT_N * 2
APP_PIN_KEY_INFO = b"antaca/app-pin/v1"  # HKDF label; changing it invalidates every app PIN

APP_PIN = """
    SELECT salt, verification, failures, locked_until FROM customer_app_pins
    WHERE customer_id = $1"""
APP_PIN_FOR_UPDATE = APP_PIN + " FOR UPDATE"
SAVE_APP_PIN = """
    INSERT INTO customer_app_pins (customer_id, salt, verification, failures, locked_until,
                                   updated_at)
    VALUES ($1, $2, $3, 0, NULL, now())
    ON CONFLICT (customer_id) DO UPDATE SET salt = $2, verification = $3, failures = 0,
        locked_until = NULL, updated_at = now()"""
SAVE_TRY = """
    UPDATE customer_app_pins SET failures = $2, locked_until = $3, updated_at = now()
    WHERE customer_id = $1"""
SAVE_PROOF = """
    INSERT INTO step_up_proofs (token_hash, customer_id, installation_id, expires_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (customer_id, installation_id) DO UPDATE SET token_hash = $1, expires_at = $4"""
PROOF = """
    SELECT expires_at FROM step_up_proofs
    WHERE token_hash = $1 AND customer_id = $2 AND installation_id = $3"""


@dataclass(frozen=True)
class TryOutcome:
    """What one application PIN try leaves: accepted or not, and the row's new count and lock."""

    accepted: bool
    locked: bool  # refused because it was (or now is) locked
    failures: int
    locked_until: datetime | None


def judge_try(matched: bool, failures: int, locked_until: datetime | None,
              now: datetime) -> TryOutcome:
    """A try against a PIN with `failures` wrong tries so far and maybe a lock (pure)."""
    if locked_until is not None and now < locked_until:
        return TryOutcome(False, True, failures, locked_until)
    if locked_until is not None:  # the lock has run out: a fresh set of tries
        failures = 0
    if matched:
        return TryOutcome(True, False, 0, None)
    failures += 1
    if failures >= APP_PIN_TRIES_MAX:
        return TryOutcome(False, True, failures, now + timedelta(minutes=APP_PIN_LOCK_MINUTES))
    return TryOutcome(False, False, failures, None)


def _app_pin_key(services: Services) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=APP_PIN_KEY_INFO)
    return hkdf.derive(services.card_keys.pin_key)


def _verification(key: bytes, customer_id: uuid.UUID, pin: str, salt: bytes) -> bytes:
    slow = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=SCRYPT_MAXMEM, dklen=32)
    return hmac.new(key, customer_id.bytes + slow, hashlib.sha256).digest()


async def _hash(services: Services, customer_id: uuid.UUID, pin: str, salt: bytes) -> bytes:
    """The PIN's verification value, computed off the event loop (scrypt is slow on purpose)."""
    return await services.background_cpu.run(_verification, _app_pin_key(services), customer_id,
                                             pin, salt)


def _proof_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def set_app_pin(services: Services, customer_id: uuid.UUID, pin: str,
                      current_pin: str | None) -> None:
    """Set the customer's application PIN; changing one needs the current PIN (a wrong one counts
    as a wrong try)."""
    problem = pin_problem(pin)
    if problem is not None:
        raise InvalidPin(problem.replace("the PIN", "the application PIN"))
    salt = os.urandom(SALT_BYTES)
    value = await _hash(services, customer_id, pin, salt)
    async with services.pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(APP_PIN_FOR_UPDATE, customer_id)
            outcome = None if row is None else await _try_pin(services, conn, customer_id, row,
                                                              current_pin or "")
            if outcome is None or outcome.accepted:
                await conn.execute(SAVE_APP_PIN, customer_id, salt, value)
        _refuse_unless_accepted(outcome)  # after the commit: a wrong try's count is kept


async def _try_pin(services: Services, conn: asyncpg.Connection, customer_id: uuid.UUID,
                   row: asyncpg.Record, pin: str) -> TryOutcome:
    """Judge a try against the (locked) PIN row and record its count, in the caller's
    transaction."""
    now = services.clock()
    if row["locked_until"] is not None and now < row["locked_until"]:
        raise AppPinLocked()  # refused before any hashing: a locked PIN takes no guesses
    matched = hmac.compare_digest(await _hash(services, customer_id, pin, row["salt"]),
                                  row["verification"])
    outcome = judge_try(matched, row["failures"], row["locked_until"], now)
    await conn.execute(SAVE_TRY, customer_id, outcome.failures, outcome.locked_until)
    return outcome


def _refuse_unless_accepted(outcome: TryOutcome | None) -> None:
    if outcome is None or outcome.accepted:
        return
    if outcome.locked:
        raise AppPinLocked()
    left = APP_PIN_TRIES_MAX - outcome.failures
    raise InvalidAppPin(f"the application PIN is wrong; {left} tries left before it locks")


@dataclass(frozen=True)
class StepUpProof:
    token: str
    expires_at: datetime


async def step_up(services: Services, customer_id: uuid.UUID, installation_id: uuid.UUID,
                  pin: str) -> StepUpProof:
    """A fresh step-up proof for this installation, if the application PIN is right."""
    token = secrets.token_urlsafe(PROOF_BYTES)
    expires_at = services.clock() + timedelta(seconds=STEP_UP_PROOF_SECONDS)
    async with services.pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(APP_PIN_FOR_UPDATE, customer_id)
            if row is None:
                raise AppPinNotSet()
            outcome = await _try_pin(services, conn, customer_id, row, pin)
            if outcome.accepted:
                await conn.execute(SAVE_PROOF, _proof_hash(token), customer_id, installation_id,
                                   expires_at)
        _refuse_unless_accepted(outcome)  # after the commit: a wrong try's count is kept
    return StepUpProof(token, expires_at)


async def require_proof(services: Services, customer_id: uuid.UUID, installation_id: uuid.UUID,
                        token: str | None) -> None:
    """Raise StepUpRequired unless `token` is this installation's unexpired step-up proof."""
    if not token:
        raise StepUpRequired()
    expires_at = await services.pool.fetchval(PROOF, _proof_hash(token), customer_id,
                                              installation_id)
    if expires_at is None:
        raise StepUpRequired("the step-up proof is not valid: confirm with the application PIN")
    if services.clock() >= expires_at:
        raise StepUpRequired("the step-up proof has expired: confirm with the application PIN "
                             "again")
