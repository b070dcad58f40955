"""The webhook worker: drains the `webhook_deliveries` outbox with Standard Webhooks signatures.

A pass claims a bounded batch of due deliveries with SKIP LOCKED in a short transaction that
pushes their `next_attempt_at` out by a lease, sends them outside any transaction with bounded
concurrency and a per-attempt timeout, then records each attempt and the delivery's new state.
Nothing here runs inside an authorization's transaction: the engine only writes events, and the
outbox rows come with them. Delivery is at least once: receivers deduplicate on `webhook-id`
(the delivery's id, the same on every retry of it; a replay is a new delivery with a new id).

Headers (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` (Unix seconds at
sending) and `webhook-signature` (`v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`, two of
them while a rotated secret still overlaps). Connections go only to addresses the checking
resolver of antaca_api/webhook_targets.py allowed; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import aiohttp
import msgspec

from antaca_api import webhooks
from antaca_api.domain_errors import WebhookTargetRefused
from antaca_api.services import Services
from antaca_api.webhook_targets import CheckingResolver, check_form
from antaca_auth import events
from antaca_auth.periodic import every

log = logging.getLogger(__name__)

DELIVERY_BATCH_MAX = 100  # deliveries claimed per pass
DELIVERY_CONCURRENCY_MAX = 16  # requests in flight at once
ATTEMPT_TIMEOUT_SECONDS = 10.0  # per request, connection included; well within the lease
USER_AGENT = "Antaca-Webhooks/1"
PRUNE_INTERVAL_SECONDS = 3600.0  # between prunings of the delivery log and of old events


class DeliveryFailed(Exception):
    """An attempt that did not deliver; `status_code` is the HTTP status, if one came."""

    def __init__(self, message: str, status_code: int | None = None, *,
                 final: bool = False) -> None:
        super().__init__(message)
        self.message, self.status_code, self.final = message, status_code, final


class WebhookMessage(msgspec.Struct, rename="camel", kw_only=True):
    """The JSON body: the Standard Webhooks envelope (type, timestamp, data) with the event."""

    id: str
    type: str
    timestamp: datetime
    partner_id: str
    object_id: str
    data: msgspec.Raw


def message_body(due: webhooks.Due) -> bytes:
    return msgspec.json.encode(WebhookMessage(
        id=str(due.event_id), type=due.type, timestamp=due.occurred_at,
        partner_id=str(due.partner_id), object_id=str(due.object_id),
        data=msgspec.Raw(due.payload.encode())))


def headers_for(due: webhooks.Due, body: bytes, timestamp: int) -> dict[str, str]:
    message_id = str(due.delivery_id)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.signature_header(due.secrets, message_id, timestamp, body),
    }


async def send(session: aiohttp.ClientSession, due: webhooks.Due, *, allow_private: bool) -> int:
    """POST the signed event; the HTTP status of a 2xx answer, or DeliveryFailed."""
    if not due.enabled:
        raise DeliveryFailed("the endpoint is disabled", final=True)
    if not due.secrets:
        raise DeliveryFailed("the signing secret cannot be opened with these card keys")
    try:
        check_form(due.url, allow_private=allow_private)  # an address host never meets the resolver
    except WebhookTargetRefused as exc:
        raise DeliveryFailed(f"refused target: {exc.message}") from None
    body = message_body(due)
    headers = headers_for(due, body, int(time.time()))
    try:
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_SECONDS)
        async with session.post(due.url, data=body, headers=headers, allow_redirects=False,
                                timeout=timeout) as response:
            status = response.status
    except WebhookTargetRefused as exc:  # raised by the checking resolver, at this connection
        raise DeliveryFailed(f"refused target: {exc.message}") from None
    except TimeoutError:
        raise DeliveryFailed(f"timed out after {ATTEMPT_TIMEOUT_SECONDS:g} s") from None
    except ValueError:  # aiohttp.InvalidURL included; the URL is not repeated (it may hold a token)
        raise DeliveryFailed("the webhook URL is not usable") from None
    except aiohttp.ClientError as exc:
        detail = str(exc) if isinstance(exc, aiohttp.ClientConnectorError) else type(exc).__name__
        raise DeliveryFailed(f"connection error: {detail}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}", status)
    return status


async def _attempt(services: Services, session: aiohttp.ClientSession, due: webhooks.Due,
                   limiter: asyncio.Semaphore, now: datetime) -> str:
    status_code, error, final = None, None, False
    async with limiter:
        try:
            status_code = await send(
                session, due, allow_private=services.settings.webhook_allow_private_targets)
        except DeliveryFailed as exc:
            status_code, error, final = exc.status_code, exc.message, exc.final
            log.warning("webhook delivery %s failed: %s", due.delivery_id, exc.message)
        except Exception:  # a bug, not the receiver: recorded so the delivery backs off
            log.exception("webhook delivery %s failed unexpectedly", due.delivery_id)
            error = "internal error (see the service log)"
    return await webhooks.record_attempt(
        services.pool, due.delivery_id, ok=error is None, status_code=status_code, error=error,
        now=now, backoff_base_seconds=services.settings.webhook_backoff_base, give_up=final)


async def deliver_due(services: Services, *, limit: int = DELIVERY_BATCH_MAX) -> int:
    """One pass: claim, send (at most DELIVERY_CONCURRENCY_MAX at once), record; how many."""
    now = services.clock()
    claimed = await webhooks.claim_due(services.pool, services.card_keys,
                                       limit=min(limit, DELIVERY_BATCH_MAX), now=now)
    if not claimed:
        return 0
    limiter = asyncio.Semaphore(DELIVERY_CONCURRENCY_MAX)
    resolver = CheckingResolver(allow_private=services.settings.webhook_allow_private_targets)
    connector = aiohttp.TCPConnector(resolver=resolver, limit=DELIVERY_CONCURRENCY_MAX)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(_attempt(services, session, due, limiter, now)
                                         for due in claimed), return_exceptions=True)
    for due, result in zip(claimed, results, strict=True):
        if isinstance(result, BaseException):  # not recorded: the lease expires and it is retried
            log.error("webhook delivery %s: the attempt could not be recorded: %r",
                      due.delivery_id, result)
    return len(claimed)


async def prune(services: Services) -> int:
    """Old settled deliveries first (they name events), then old events; how many rows."""
    now = services.clock()
    return await webhooks.prune(services.pool, now) + await events.prune(services.pool, now)


async def run_webhook_worker(services: Services, interval: float) -> None:
    """Deliver due webhooks every `interval` seconds, and prune hourly, until cancelled."""
    await asyncio.gather(
        every(interval, lambda: deliver_due(services),
              "webhook delivery pass (deliveries attempted)"),
        every(PRUNE_INTERVAL_SECONDS, lambda: prune(services),
              "webhook log and events pruning (rows deleted)"))
