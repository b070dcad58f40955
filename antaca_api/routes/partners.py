"""Partners and their client certificates (administration channel)."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_api import pages
from antaca_api import partners as repo
from antaca_api.domain_errors import NotFound
from antaca_api.fields import Email, Name
from antaca_api.routing import ADMIN_ONLY, Channel, Context, route
from antaca_api.schema import Body, Page


class PartnerStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class NewPartner(Body):
    name: Name
    contact_email: Email | None = None
    webhook_url: Annotated[str, Meta(pattern=r"^https?://", max_length=2048)] | None = None


class Partner(Body):
    id: uuid.UUID
    name: str
    contact_email: str | None
    webhook_url: str | None
    status: PartnerStatus
    created_at: datetime


class Partners(Page, kw_only=True):
    items: list[Partner]


class NewPartnerResult(Partner, kw_only=True):
    webhook_secret: str  # HMAC-SHA256 key of its webhooks' signatures: shown here and on rotation only


@route("POST", "/admin/partners", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewPartner, response=NewPartnerResult,
       status=201, summary="Onboard a partner (the answer carries its webhook signing secret)", tags=("partners",))
async def create_partner(ctx: Context, body: NewPartner) -> NewPartnerResult:
    partner_id = uuid.uuid4()
    ctx.audit_target = f"partner:{partner_id}"
    secret = repo.new_webhook_secret()
    async with ctx.transaction() as conn:
        row = await repo.create(conn, ctx.services.card_keys, partner_id, body.name,
                                body.contact_email, body.webhook_url, secret)
        partner = Partner(**dict(row))
    return NewPartnerResult(**msgspec.structs.asdict(partner), webhook_secret=secret)


class PartnerContact(Body):
    contact_email: Email | None = None
    webhook_url: Annotated[str, Meta(pattern=r"^https?://", max_length=2048)] | None = None


@route("PUT", "/admin/partners/{partnerId}/contact", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=PartnerContact,
       response=Partner, summary="Change where a partner's alerts go (e-mail and webhook URL; null removes)",
       tags=("partners",))
async def set_partner_contact(ctx: Context, body: PartnerContact) -> Partner:
    partner_id = ctx.path_id("partnerId")
    ctx.audit_target = f"partner:{partner_id}"
    async with ctx.transaction() as conn:
        row = await repo.set_contact(conn, partner_id, body.contact_email, body.webhook_url)
    return Partner(**dict(row))


class WebhookSecret(Body):
    webhook_secret: str


@route("POST", "/admin/partners/{partnerId}/webhook-secret", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       response=WebhookSecret, summary="Rotate a partner's webhook signing secret (the old one stops at once)",
       tags=("partners",))
async def rotate_webhook_secret(ctx: Context, _: None) -> WebhookSecret:
    partner_id = ctx.path_id("partnerId")
    ctx.audit_target = f"partner:{partner_id}"
    secret = repo.new_webhook_secret()
    async with ctx.transaction() as conn:
        await repo.set_webhook_secret(conn, ctx.services.card_keys, partner_id, secret)
    return WebhookSecret(webhook_secret=secret)


@route("GET", "/admin/partners", channel=Channel.ADMIN, response=Partners, summary="List partners",
       tags=("partners",))
async def list_partners(ctx: Context, _: None) -> Partners:
    page = ctx.page(repo.PARTNER_PAGES)
    rows, cursor = pages.cut(await repo.all_partners(ctx.pool, page, ctx.admin.partner_id), page,
                             lambda r: (r["created_at"], r["id"]))
    return Partners(items=[Partner(**dict(r)) for r in rows], next_cursor=cursor)


@route("GET", "/admin/partners/{partnerId}", channel=Channel.ADMIN, response=Partner, summary="Get a partner",
       tags=("partners",))
async def get_partner(ctx: Context, _: None) -> Partner:
    async with ctx.pool.acquire() as conn:
        return Partner(**dict(await repo.find(conn, ctx.path_id("partnerId"))))


class StatusChange(Body):
    status: PartnerStatus


@route("PUT", "/admin/partners/{partnerId}/status", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=StatusChange,
       response=Partner, summary="Suspend or reactivate a partner", tags=("partners",))
async def set_partner_status(ctx: Context, body: StatusChange) -> Partner:
    partner_id = ctx.path_id("partnerId")
    ctx.audit_target = f"partner:{partner_id}"
    async with ctx.transaction() as conn:
        partner = Partner(**dict(await repo.set_status(conn, partner_id, str(body.status))))
    ctx.services.credentials.clear()  # committed: the next request sees the new status
    return partner


class CertificateRequest(Body):
    csr: str  # PEM


class Certificate(Body):
    serial: str
    partner_id: uuid.UUID
    fingerprint: str
    subject: str
    not_before: datetime
    not_after: datetime
    certificate: str  # PEM
    revoked_at: datetime | None = None


class IssuedCertificate(Certificate, kw_only=True):
    ca_certificate: str  # PEM of Antaca's CA, for the partner's trust store


class Certificates(Body):
    items: list[Certificate]


SERIAL = re.compile(r"[0-9a-f]{1,40}")


@route("POST", "/admin/partners/{partnerId}/certificates", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=CertificateRequest, response=IssuedCertificate, status=201,
       summary="Sign a partner's CSR with Antaca's CA (client certificate for mutual TLS)", tags=("partners",))
async def issue_certificate(ctx: Context, body: CertificateRequest) -> IssuedCertificate:
    partner_id = ctx.path_id("partnerId")
    ca = ctx.services.ca
    async with ctx.transaction() as conn:
        issued = await repo.issue_certificate(conn, ca, body.csr, partner_id,
                                              background_cpu=ctx.services.background_cpu)
        ctx.audit_target = f"certificate:{issued.serial}"
    return IssuedCertificate(
        serial=issued.serial, partner_id=partner_id, fingerprint=issued.fingerprint, subject=issued.subject,
        not_before=issued.not_before, not_after=issued.not_after, certificate=issued.pem,
        ca_certificate=ca.cert_pem,
    )


@route("GET", "/admin/partners/{partnerId}/certificates", channel=Channel.ADMIN, response=Certificates,
       summary="List a partner's certificates", tags=("partners",))
async def list_certificates(ctx: Context, _: None) -> Certificates:
    partner_id = ctx.path_id("partnerId")
    async with ctx.pool.acquire() as conn:
        rows = await repo.certificates(conn, partner_id)
    return Certificates(items=[Certificate(**dict(r)) for r in rows])


def certificate_serial(ctx: Context, owner: str) -> str:
    """The path's certificate serial, the audit's target; not hex (pki.describe) is unknown."""
    serial = ctx.request.match_info["serial"].lower()
    if not SERIAL.fullmatch(serial):
        raise NotFound(f"no such certificate for this {owner}")
    ctx.audit_target = f"certificate:{serial}"
    return serial


@route("POST", "/admin/partners/{partnerId}/certificates/{serial}/revoke", channel=Channel.ADMIN,
       roles=ADMIN_ONLY, response=Certificate, summary="Revoke a partner's certificate (takes effect at once)",
       tags=("partners",))
async def revoke_certificate(ctx: Context, _: None) -> Certificate:
    partner_id = ctx.path_id("partnerId")
    serial = certificate_serial(ctx, "partner")
    async with ctx.transaction() as conn:
        row = await repo.revoke_certificate(conn, partner_id, serial)
    ctx.services.credentials.clear()  # committed: the certificate's next request is refused
    return Certificate(**dict(row))
