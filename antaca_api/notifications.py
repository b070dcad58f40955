"""The low-balance alert worker: drains the `alert_deliveries` outbox by e-mail and signed webhook.

A pass claims due deliveries with SKIP LOCKED in a short transaction that pushes their
`next_attempt_at` out by a lease, sends them outside any transaction, then records each attempt
(the delivery log) and the delivery's new state in one transaction per delivery. A worker that
dies mid-send leaves the lease to expire, so the delivery is retried: delivery is at least once,
and receivers deduplicate on `X-Antaca-Delivery`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiohttp
import aiosmtplib
import asyncpg
import msgspec

from antaca_api import pages
from antaca_api.domain_errors import NotFound
from antaca_api.partners import open_secret
from antaca_api.services import Services
from antaca_api.settings import Settings
from antaca_auth.cardkeys import CardKeys
from antaca_auth.periodic import every

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)  # longer than any send can take (both time out after SEND_TIMEOUT)
SEND_TIMEOUT = 10.0  # seconds, per webhook POST or SMTP conversation
BACKOFF_CAP = 3600.0  # seconds
SIGNATURE_TOLERANCE = 300  # seconds a receiver should accept between our timestamp and its clock
EVENT_TYPE = "partner.balance.low"

# partner_accounts.kind as partners see it.
KIND_NAMES = {"partner_deposit": "DEPOSIT", "partner_credit": "CREDIT"}


class DeliveryFailed(Exception):
    """An attempt that did not deliver; `status_code` is the HTTP status or SMTP reply code, if any."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True, kw_only=True)
class Due:
    """A claimed delivery with everything needed to send it."""

    delivery_id: int
    alert_id: int
    channel: str  # EMAIL or WEBHOOK
    target: str  # e-mail address or webhook URL
    partner_id: uuid.UUID
    partner_name: str
    webhook_secret: str | None = field(repr=False)  # never in logs or reprs
    account_id: uuid.UUID
    kind: str  # DEPOSIT or CREDIT
    currency: str
    exponent: int
    threshold: int
    available: int
    occurred_at: datetime


class WebhookEvent(msgspec.Struct, rename="camel", kw_only=True):
    """The JSON body POSTed to a partner's webhook."""

    type: str
    alert_id: int
    delivery_id: int
    partner_id: uuid.UUID
    balance_id: uuid.UUID
    kind: str
    currency: str
    threshold: int
    available: int
    occurred_at: datetime


# --- pure helpers ---------------------------------------------------------------------------
def format_amount(minor: int, exponent: int) -> str:
    """Minor units as a decimal string with the currency's exponent: (12345, 2) -> "123.45"."""
    sign, digits = ("-" if minor < 0 else ""), str(abs(minor))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def backoff(attempts: int, base: float) -> float:
    """Seconds to wait after the `attempts`-th failure: base, 2*base, 4*base, ... capped at an hour."""
    return min(base * 2.0 ** min(attempts - 1, 64), BACKOFF_CAP)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Antaca-Signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t." + body>`."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str, body: bytes, *, tolerance_s: float = SIGNATURE_TOLERANCE,
                     now: float | None = None) -> bool:
    """Whether `header` signs `body` with `secret` at a timestamp within `tolerance_s` of `now` (unix seconds)."""
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False  # a replay of an old delivery, or a clock far off
    expected = _mac(secret, timestamp, body)
    # Every candidate is compared (several v1 values are allowed), each in constant time.
    return any([hmac.compare_digest(expected.encode(), c.encode("utf-8", "replace")) for c in candidates])


def webhook_body(due: Due) -> bytes:
    return msgspec.json.encode(WebhookEvent(
        type=EVENT_TYPE, alert_id=due.alert_id, delivery_id=due.delivery_id, partner_id=due.partner_id,
        balance_id=due.account_id, kind=due.kind, currency=due.currency, threshold=due.threshold,
        available=due.available, occurred_at=due.occurred_at,
    ))


def email_message(due: Due, sender: str) -> EmailMessage:
    """The plain-text alert e-mail."""
    kind = due.kind.lower()
    message = EmailMessage()
    message["From"] = sender
    message["To"] = due.target
    message["Subject"] = f"Antaca: low {kind} balance ({due.currency})"
    message["Date"] = format_datetime(due.occurred_at)
    message["Message-ID"] = make_msgid(f"alert-{due.alert_id}-{due.delivery_id}")
    message["X-Antaca-Delivery"] = str(due.delivery_id)

    def amount(minor: int) -> str:
        return f"{format_amount(minor, due.exponent)} {due.currency}"

    message.set_content(
        f"The {kind} balance of {due.partner_name} in {due.currency} went below its low-balance threshold.\n"
        f"\n"
        f"Partner:    {due.partner_name} ({due.partner_id})\n"
        f"Balance:    {due.kind} {due.currency} ({due.account_id})\n"
        f"Threshold:  {amount(due.threshold)}\n"
        f"Available:  {amount(due.available)}\n"
        f"At:         {due.occurred_at.isoformat()}\n"
        f"\n"
        f"Alert {due.alert_id}, delivery {due.delivery_id}. Reload the balance to re-arm the alert.\n"
    )
    return message


# --- sending --------------------------------------------------------------------------------
async def send_email(settings: Settings, due: Due) -> int:
    """Send the alert e-mail; the SMTP reply code, or DeliveryFailed."""
    if not settings.smtp_host:
        raise DeliveryFailed("SMTP is not configured")
    try:
        # aiosmtplib's timeout is per command; the whole conversation must also end well within the lease.
        async with asyncio.timeout(SEND_TIMEOUT):
            await aiosmtplib.send(
                email_message(due, settings.smtp_from), hostname=settings.smtp_host, port=settings.smtp_port,
                username=settings.smtp_username, password=settings.smtp_password,
                start_tls=settings.smtp_starttls, timeout=SEND_TIMEOUT,
            )
    except aiosmtplib.SMTPResponseException as exc:  # the server answered, and refused
        raise DeliveryFailed(f"SMTP {exc.code}: {exc.message}"[:500], exc.code) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryFailed(f"SMTP error: {type(exc).__name__}: {exc}"[:500]) from None
    return 250  # send() returns only when the server accepted the DATA, which is always a 250


async def send_webhook(session: aiohttp.ClientSession, due: Due, timestamp: int) -> int:
    """POST the signed event; the HTTP status of a 2xx answer, or DeliveryFailed."""
    if not due.webhook_secret:
        raise DeliveryFailed("the partner has no webhook secret")  # never send unsigned
    body = webhook_body(due)
    headers = {
        "Content-Type": "application/json",
        "X-Antaca-Delivery": str(due.delivery_id),
        "X-Antaca-Signature": sign(due.webhook_secret, timestamp, body),
    }
    try:
        # No redirects: the signature and the partner's endpoint go together, not to wherever it points.
        async with session.post(due.target, data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT)) as response:
            status = response.status
    except TimeoutError:
        raise DeliveryFailed(f"timed out after {SEND_TIMEOUT:g} s") from None
    except ValueError:  # aiohttp.InvalidURL included; the URL itself is not repeated (it may hold a token)
        raise DeliveryFailed("the webhook URL is not usable") from None
    except aiohttp.ClientError as exc:
        # Only a connection error's text is safe to keep (host and port); others may quote the URL.
        detail = str(exc) if isinstance(exc, aiohttp.ClientConnectorError) else type(exc).__name__
        raise DeliveryFailed(f"connection error: {detail}"[:500]) from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}", status)
    return status


# --- the outbox -----------------------------------------------------------------------------
CLAIM = """
    WITH claimed AS (
        UPDATE alert_deliveries d SET next_attempt_at = $2
        WHERE d.id IN (SELECT id FROM alert_deliveries
                       WHERE state = 'PENDING' AND next_attempt_at <= $1
                       ORDER BY next_attempt_at, id LIMIT $3
                       FOR UPDATE SKIP LOCKED)
        RETURNING d.id, d.alert_id, d.channel, d.target
    )
    SELECT c.id AS delivery_id, c.alert_id, c.channel, c.target, a.partner_id, p.name AS partner_name,
           p.webhook_secret, p.webhook_secret_sealed,
           a.account_id, a.kind, a.currency, cu.exponent, a.threshold, a.available,
           a.created_at AS occurred_at
    FROM claimed c
    JOIN partner_alerts a ON a.id = c.alert_id
    JOIN partners p ON p.id = a.partner_id
    JOIN currencies cu ON cu.code = a.currency
    ORDER BY c.id"""


async def claim_due(pool: asyncpg.Pool, *, limit: int, now: datetime, lease: timedelta = LEASE,
                    keys: CardKeys | None = None) -> list[Due]:
    """Claim up to `limit` due PENDING deliveries for `lease` (committed before anything is sent).
    A sealed secret is opened with `keys`; one still in clear (written before sql/0024 and not
    sealed yet by `antaca serve`'s start) is used as it is."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(CLAIM, now, now + lease, limit)
    claimed = []
    for r in rows:
        fields = dict(r)
        sealed = fields.pop("webhook_secret_sealed")
        if sealed is not None and keys is not None:
            fields["webhook_secret"] = open_secret(keys, r["partner_id"], sealed)
        claimed.append(Due(**{**fields, "kind": KIND_NAMES[r["kind"]]}))
    return claimed


async def record_attempt(pool: asyncpg.Pool, due: Due, *, ok: bool, status_code: int | None, error: str | None,
                         now: datetime, max_attempts: int, backoff_base: float) -> None:
    """Log one attempt and move the delivery on: SENT, retried after a backoff, or FAILED."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT state, attempts FROM alert_deliveries WHERE id = $1 FOR UPDATE",
                                  due.delivery_id)
        # Numbered under the row lock, so an attempt that outlived its lease (and overlapped a
        # retry by another worker) still gets its own number.
        attempt = row["attempts"] + 1
        await conn.execute(
            """INSERT INTO alert_delivery_attempts (delivery_id, attempt, ok, status_code, error, created_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            due.delivery_id, attempt, ok, status_code, error, now,
        )
        if ok:
            await conn.execute(
                """UPDATE alert_deliveries SET state = 'SENT', attempts = $2, sent_at = coalesce(sent_at, $3)
                   WHERE id = $1""",
                due.delivery_id, attempt, now,
            )
        elif row["state"] != "PENDING":  # already settled by an overlapping attempt: only count this one
            await conn.execute("UPDATE alert_deliveries SET attempts = $2 WHERE id = $1", due.delivery_id, attempt)
        else:
            await conn.execute(
                """UPDATE alert_deliveries SET attempts = $2::integer, last_error = $3, next_attempt_at = $4,
                          state = CASE WHEN $2::integer >= $5::integer THEN 'FAILED' ELSE 'PENDING' END
                   WHERE id = $1""",
                due.delivery_id, attempt, error, now + timedelta(seconds=backoff(attempt, backoff_base)),
                max_attempts,
            )


async def _attempt(services: Services, session: aiohttp.ClientSession, due: Due, *, now: datetime,
                   max_attempts: int) -> None:
    status_code, error = None, None
    try:
        if due.channel == "EMAIL":
            status_code = await send_email(services.settings, due)
        else:
            status_code = await send_webhook(session, due, int(services.clock().timestamp()))
    except DeliveryFailed as exc:
        status_code, error = exc.status_code, exc.message
        log.warning("alert delivery %d (%s) failed: %s", due.delivery_id, due.channel, exc.message)
    except Exception:  # a bug, not the receiver: record it so the delivery backs off instead of spinning
        log.exception("alert delivery %d (%s) failed unexpectedly", due.delivery_id, due.channel)
        error = "internal error (see the service log)"
    await record_attempt(services.pool, due, ok=error is None, status_code=status_code, error=error, now=now,
                         max_attempts=max_attempts, backoff_base=services.settings.alert_backoff_base)


async def deliver_due(services: Services, *, limit: int = 50, max_attempts: int | None = None,
                      now: datetime | None = None) -> int:
    """One pass: claim, send concurrently, record each attempt; returns how many were attempted."""
    now = now or services.clock()
    max_attempts = max_attempts or services.settings.alert_max_attempts
    claimed = await claim_due(services.pool, limit=limit, now=now, keys=services.card_keys)
    if not claimed:
        return 0
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(_attempt(services, session, due, now=now, max_attempts=max_attempts) for due in claimed),
            return_exceptions=True,
        )
    for due, result in zip(claimed, results, strict=True):
        if isinstance(result, BaseException):  # recording failed: the lease expires and it is retried
            log.error("alert delivery %d: the attempt could not be recorded: %r", due.delivery_id, result)
    return len(claimed)


async def run_alert_worker(services: Services, interval: float) -> None:
    """Deliver due alerts every `interval` seconds until cancelled."""
    await every(interval, lambda: deliver_due(services), "alert delivery pass (deliveries attempted)")


# --- the administration channel's view of alerts ---------------------------------------------

PARTNER_EXISTS = "SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1)"
PARTNER_ALERTS = """
    SELECT id, partner_id, account_id, kind, currency, threshold, available, created_at
    FROM partner_alerts WHERE partner_id = $1 AND ($2::bigint IS NULL OR id < $2)
    ORDER BY id DESC LIMIT $3"""
ALERT_PAGES = pages.Keyset("partner-alerts", tuple[int], descending=True)  # (id,), newest first
ALERT_DELIVERIES = """
    SELECT id, alert_id, channel, target, state, attempts, next_attempt_at, last_error, sent_at,
        created_at
    FROM alert_deliveries WHERE alert_id = ANY($1::bigint[]) ORDER BY id"""
DELIVERY_ATTEMPTS = """
    SELECT delivery_id, attempt, ok, status_code, error, created_at
    FROM alert_delivery_attempts WHERE delivery_id = ANY($1::bigint[])
    ORDER BY delivery_id, attempt"""


@dataclass(frozen=True)
class AlertRecords:
    """A page of a partner's alerts with their deliveries and those deliveries' attempts."""

    alerts: list[asyncpg.Record]
    deliveries: list[asyncpg.Record]
    attempts: list[asyncpg.Record]


async def partner_alerts(pool: asyncpg.Pool, partner_id: uuid.UUID,
                         page: pages.PageRequest) -> AlertRecords:
    """A page of a partner's alerts (ALERT_PAGES: `page.fetch` of them, the deliveries of the
    first `page.limit`), newest first; an unknown partner is NOT_FOUND."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for the three reads, so a delivery never shows attempts it does not count.
        if not await conn.fetchval(PARTNER_EXISTS, partner_id):
            raise NotFound("no such partner")
        alerts = await conn.fetch(PARTNER_ALERTS, partner_id, page.after_key(), page.fetch)
        shown = [alert["id"] for alert in alerts[:page.limit]]
        deliveries = await conn.fetch(ALERT_DELIVERIES, shown)
        attempts = await conn.fetch(DELIVERY_ATTEMPTS, [delivery["id"] for delivery in deliveries])
    return AlertRecords(alerts=alerts, deliveries=deliveries, attempts=attempts)


# --- what operators watch (antaca_api/metrics.py) --------------------------------------------

OUTBOX_COUNTS = """
    SELECT state, count(*) AS deliveries FROM alert_deliveries
    WHERE state IN ('PENDING', 'FAILED') GROUP BY state"""


async def outbox_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Alert deliveries waiting (PENDING) and given up (FAILED), by state."""
    counts = {"PENDING": 0, "FAILED": 0}
    counts.update({r["state"]: r["deliveries"] for r in await conn.fetch(OUTBOX_COUNTS)})
    return counts
