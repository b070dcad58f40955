"""Card programs (administration) and card networks with their certificates."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from antaca_api import networks, pages, programs, webhook_targets
from antaca_api.balances import check_currency
from antaca_api.domain_errors import InvalidProgram
from antaca_api.fields import Currency, Name
from antaca_api.processors import PROCESSORS
from antaca_api.routes.partners import CertificateRequest, certificate_serial
from antaca_api.routing import ADMIN_ONLY, Channel, Context, route
from antaca_api.schema import Body, Page
from antaca_api.webhook_targets import check_target
from antaca_auth import authorization_settings, remote
from antaca_auth.authorization_settings import StandInMode
from antaca_auth.pans import PAN_LENGTH_MAX, PAN_LENGTH_MIN


class FundingModel(enum.StrEnum):
    DEPOSIT = "DEPOSIT"
    CREDIT = "CREDIT"
    REMOTE = "REMOTE"  # the partner holds the balances and approves each payment (remoteUrl)


class NewProgram(Body):
    partner_id: uuid.UUID
    name: Name
    bin_prefix: Annotated[str, Meta(pattern=r"^[0-9]{6,11}$")]
    pan_length: Annotated[int, Meta(ge=PAN_LENGTH_MIN, le=PAN_LENGTH_MAX)]
    currency: Currency
    funding_model: FundingModel
    validity_months: Annotated[int, Meta(ge=1, le=120)]
    processor: str = "simulated"
    processor_config: dict = {}
    # REMOTE only: where Antaca asks the partner (https, checked like a webhook target), and how
    # long the partner may take (within the authorization's own deadline).
    remote_url: Annotated[str, Meta(max_length=webhook_targets.URL_LENGTH_MAX)] | None = None
    remote_deadline_ms: Annotated[int, Meta(ge=remote.REMOTE_DEADLINE_MS_MIN,
                                            le=remote.REMOTE_DEADLINE_MS_MAX)] = \
        remote.REMOTE_DEADLINE_MS_DEFAULT


class CardProgram(Body):
    program_id: uuid.UUID
    partner_id: uuid.UUID
    name: str
    bin_prefix: str
    pan_length: int
    currency: str
    funding_model: FundingModel
    validity_months: int
    processor: str
    processor_config: dict
    created_at: datetime
    stand_in_mode: StandInMode = StandInMode.DECLINE
    stand_in_limit: int = 0  # per card and UTC day, minor units of the program's currency
    ecommerce_without_cvc2: bool = False
    time_zone: str = "UTC"  # where the program's velocity limits' days begin
    remote_deadline_ms: int | None = None  # REMOTE: the partner call's deadline
    remote_endpoint_id: uuid.UUID | None = None  # REMOTE: its advice endpoint (webhook endpoints)
    remote_url: str | None = None  # REMOTE, on creation only
    remote_secret: str | None = None  # REMOTE, on creation only: signs calls and advices


class CardPrograms(Page, kw_only=True):
    items: list[CardProgram]


def program_view(r) -> CardProgram:
    return CardProgram(program_id=r["id"], partner_id=r["partner_id"], name=r["name"], bin_prefix=r["bin_prefix"],
                       pan_length=r["pan_length"], currency=r["currency"], funding_model=FundingModel(r["funding_model"]),
                       validity_months=r["validity_months"], processor=r["processor"],
                       processor_config=r["processor_config"], created_at=r["created_at"],
                       stand_in_mode=StandInMode(r["stand_in_mode"]), stand_in_limit=r["stand_in_limit"],
                       ecommerce_without_cvc2=r["ecommerce_without_cvc2"], time_zone=r["time_zone"],
                       remote_deadline_ms=r["remote_deadline_ms"],
                       remote_endpoint_id=r["remote_endpoint_id"])


@route("POST", "/admin/programs", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewProgram, response=CardProgram,
       status=201, summary="Create a card program for a partner", tags=("programs",))
async def create_program(ctx: Context, body: NewProgram) -> CardProgram:
    if body.processor not in PROCESSORS:
        raise InvalidProgram(f"unknown processor {body.processor!r}; known: {', '.join(sorted(PROCESSORS))}")
    if len(body.bin_prefix) >= body.pan_length - 1:
        raise InvalidProgram("the BIN prefix must leave room for account digits and the check digit")
    await check_currency(ctx.services.ledger, body.currency)
    setup = None
    if body.remote_url is not None:
        await check_target(body.remote_url,
                           allow_private=ctx.services.settings.webhook_allow_private_targets)
        setup = programs.RemoteSetup(body.remote_url, body.remote_deadline_ms)
    program_id = uuid.uuid4()
    ctx.audit_target = f"program:{program_id}"
    async with ctx.transaction() as conn:
        row, secret = await programs.create(
            conn, program_id, body.partner_id, name=body.name, bin_prefix=body.bin_prefix,
            pan_length=body.pan_length, currency=body.currency, processor=body.processor,
            funding_model=str(body.funding_model), validity_months=body.validity_months,
            processor_config=body.processor_config, remote=setup, ledger=ctx.services.ledger,
            keys=ctx.services.card_keys)
    view = program_view(row)
    if secret is not None:
        view = msgspec.structs.replace(view, remote_url=body.remote_url, remote_secret=secret)
    return view


@route("GET", "/admin/programs", channel=Channel.ADMIN, response=CardPrograms, summary="List card programs",
       tags=("programs",))
async def list_programs(ctx: Context, _: None) -> CardPrograms:
    page = ctx.page(programs.PROGRAM_PAGES)
    rows, cursor = pages.cut(await programs.all_programs(ctx.pool, page, ctx.admin.partner_id),
                             page,
                             lambda r: (r["created_at"], r["id"]))
    return CardPrograms(items=[program_view(r) for r in rows], next_cursor=cursor)


@route("GET", "/admin/programs/{programId}", channel=Channel.ADMIN, response=CardProgram,
       summary="Get a card program", tags=("programs",))
async def get_program(ctx: Context, _: None) -> CardProgram:
    return program_view(await programs.find(ctx.pool, ctx.path_id("programId")))


class AuthorizationRules(Body):
    """How the program's payments are decided when the engine stands in, and without CVC2."""

    stand_in_mode: StandInMode
    stand_in_limit: Annotated[int, Meta(ge=0, le=2**63 - 1)] = 0
    ecommerce_without_cvc2: bool = False


@route("PUT", "/admin/programs/{programId}/authorization-rules", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=AuthorizationRules, response=CardProgram, tags=("programs",),
       summary="Set the program's stand-in rule (DECLINE, or APPROVE up to a per-card daily limit) and "
               "whether e-commerce payments without CVC2 are accepted")
async def set_authorization_rules(ctx: Context, body: AuthorizationRules) -> CardProgram:
    program_id = ctx.path_id("programId")
    ctx.audit_target = f"program:{program_id}"
    async with ctx.transaction() as conn:
        row = await programs.set_authorization_rules(
            conn, program_id, body.stand_in_mode, body.stand_in_limit, body.ecommerce_without_cvc2)
    return program_view(row)


class NewNetwork(Body):
    name: Name


class Network(Body):
    network_id: uuid.UUID
    name: str
    status: str
    created_at: datetime
    authorization_deadline_ms: int = 1500  # the time budget of an authorization's answer


def network_view(r) -> Network:
    return Network(network_id=r["id"], name=r["name"], status=r["status"], created_at=r["created_at"],
                   authorization_deadline_ms=r["authorization_deadline_ms"])


class NetworkChanges(Body):
    authorization_deadline_ms: Annotated[int, Meta(ge=authorization_settings.DEADLINE_MS_MIN,
                                                   le=authorization_settings.DEADLINE_MS_MAX)]


@route("PATCH", "/admin/networks/{networkId}", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NetworkChanges,
       response=Network, tags=("networks",),
       summary="Set a network's authorization deadline (ms from arrival; past it the engine stands in)")
async def change_network(ctx: Context, body: NetworkChanges) -> Network:
    network_id = ctx.path_id("networkId")
    ctx.audit_target = f"network:{network_id}"
    async with ctx.transaction() as conn:
        row = await networks.set_deadline(conn, network_id, body.authorization_deadline_ms)
    ctx.services.credentials.clear()  # the deadline travels with the network's certificate row
    return network_view(row)


@route("POST", "/admin/networks", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewNetwork, response=Network,
       status=201, summary="Register a card network or acquirer that calls the network channel", tags=("networks",))
async def create_network(ctx: Context, body: NewNetwork) -> Network:
    network_id = uuid.uuid4()
    ctx.audit_target = f"network:{network_id}"
    async with ctx.transaction() as conn:
        row = await networks.create(conn, network_id, body.name)
    return network_view(row)


class NetworkCertificate(Body):
    serial: str
    network_id: uuid.UUID
    fingerprint: str
    subject: str
    not_before: datetime
    not_after: datetime
    certificate: str
    ca_certificate: str


@route("POST", "/admin/networks/{networkId}/certificates", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=CertificateRequest, response=NetworkCertificate, status=201,
       summary="Sign a network's CSR (client certificate for the network channel)", tags=("networks",))
async def issue_network_certificate(ctx: Context, body: CertificateRequest) -> NetworkCertificate:
    network_id = ctx.path_id("networkId")
    ca = ctx.services.ca
    async with ctx.transaction() as conn:
        issued = await networks.issue_certificate(conn, ca, body.csr, network_id,
                                                  background_cpu=ctx.services.background_cpu)
        ctx.audit_target = f"certificate:{issued.serial}"
    return NetworkCertificate(serial=issued.serial, network_id=network_id, fingerprint=issued.fingerprint,
                             subject=issued.subject, not_before=issued.not_before, not_after=issued.not_after,
                             certificate=issued.pem, ca_certificate=ca.cert_pem)



class NetworkStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class NetworkStatusChange(Body):
    status: NetworkStatus


@route("PUT", "/admin/networks/{networkId}/status", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=NetworkStatusChange, response=Network, tags=("networks",),
       summary="Suspend or reactivate a network: a suspended network's requests are refused "
               "at once")
async def set_network_status(ctx: Context, body: NetworkStatusChange) -> Network:
    network_id = ctx.path_id("networkId")
    ctx.audit_target = f"network:{network_id}"
    async with ctx.transaction() as conn:
        row = await networks.set_status(conn, network_id, str(body.status))
    ctx.services.credentials.clear()  # committed: the next request sees the new status
    return network_view(row)


class IssuedNetworkCertificate(Body):
    serial: str
    network_id: uuid.UUID
    fingerprint: str
    subject: str
    not_before: datetime
    not_after: datetime
    certificate: str  # PEM
    revoked_at: datetime | None = None


class NetworkCertificates(Body):
    items: list[IssuedNetworkCertificate]


@route("GET", "/admin/networks/{networkId}/certificates", channel=Channel.ADMIN,
       response=NetworkCertificates, summary="List a network's certificates", tags=("networks",))
async def list_network_certificates(ctx: Context, _: None) -> NetworkCertificates:
    async with ctx.pool.acquire() as conn:
        rows = await networks.certificates(conn, ctx.path_id("networkId"))
    return NetworkCertificates(items=[IssuedNetworkCertificate(**dict(r)) for r in rows])


@route("POST", "/admin/networks/{networkId}/certificates/{serial}/revoke", channel=Channel.ADMIN,
       roles=ADMIN_ONLY, response=IssuedNetworkCertificate, tags=("networks",),
       summary="Revoke a network's certificate (takes effect at once, ISO 8583 connections "
               "included)")
async def revoke_network_certificate(ctx: Context, _: None) -> IssuedNetworkCertificate:
    network_id = ctx.path_id("networkId")
    serial = certificate_serial(ctx, "network")
    async with ctx.transaction() as conn:
        row = await networks.revoke_certificate(conn, network_id, serial)
    ctx.services.credentials.clear()  # committed: the certificate's next request is refused
    return IssuedNetworkCertificate(**dict(row))
