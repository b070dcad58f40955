"""A partner's low-balance alerts with their deliveries and delivery log (administration channel)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from antaca_api.notifications import KIND_NAMES, partner_alerts
from antaca_api.routing import PAGE_SIZE_MAX, Channel, Context, route
from antaca_api.schema import Body, Page


class AlertKind(enum.StrEnum):
    DEPOSIT = "DEPOSIT"
    CREDIT = "CREDIT"


class DeliveryChannel(enum.StrEnum):
    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class DeliveryAttempt(Body):
    attempt: int
    ok: bool
    status_code: int | None  # HTTP status of a webhook, SMTP reply code of an e-mail
    error: str | None
    created_at: datetime


class AlertDelivery(Body):
    id: int
    channel: DeliveryChannel
    target: str  # e-mail address or webhook URL, as at the crossing
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime
    log: list[DeliveryAttempt]


class Alert(Body):
    id: int
    partner_id: uuid.UUID
    balance_id: uuid.UUID  # the partner deposit or credit balance (ledger account) that crossed
    kind: AlertKind
    currency: str
    threshold: int  # minor units
    available: int  # minor units, just after the crossing
    created_at: datetime
    deliveries: list[AlertDelivery]


class Alerts(Page):
    items: list[Alert]


@route("GET", "/admin/partners/{partnerId}/alerts", channel=Channel.ADMIN, response=Alerts,
       summary="A partner's low-balance alerts, newest first, with each delivery and its attempts (cursor pagination)",
       tags=("partners",), page_size_max=PAGE_SIZE_MAX)
async def list_alerts(ctx: Context, _: None) -> Alerts:
    partner_id = ctx.path_id("partnerId")
    limit = ctx.page_size()
    before = ctx.query_int("cursor", 2**62, low=1, high=2**62)
    records = await partner_alerts(ctx.pool, partner_id, before=before, limit=limit)
    alerts, deliveries, attempts = records.alerts, records.deliveries, records.attempts
    log: dict[int, list[DeliveryAttempt]] = {}
    for a in attempts:
        log.setdefault(a["delivery_id"], []).append(DeliveryAttempt(
            attempt=a["attempt"], ok=a["ok"], status_code=a["status_code"], error=a["error"],
            created_at=a["created_at"]))
    by_alert: dict[int, list[AlertDelivery]] = {}
    for d in deliveries:
        fields = {k: v for k, v in dict(d).items() if k != "alert_id"}
        by_alert.setdefault(d["alert_id"], []).append(AlertDelivery(**fields, log=log.get(d["id"], [])))
    items = [
        Alert(id=a["id"], partner_id=a["partner_id"], balance_id=a["account_id"], kind=AlertKind(KIND_NAMES[a["kind"]]),
              currency=a["currency"], threshold=a["threshold"], available=a["available"],
              created_at=a["created_at"], deliveries=by_alert.get(a["id"], []))
        for a in alerts
    ]
    return Alerts(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)
