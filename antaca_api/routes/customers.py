"""Customers and KYC: partners register and manage their users; apps act as the user ("me")."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from antaca_api import customers as repo
from antaca_api import pages
from antaca_api.fields import Country, Email, ExternalId, Name, Phone, Text
from antaca_api.kyc import KycStatus
from antaca_api.routing import PAGE_SIZE_MAX, Channel, Context, route
from antaca_api.schema import Body, Page


class Address(Body):
    line1: Text
    city: Name
    postal_code: Annotated[str, Meta(min_length=1, max_length=16)]
    country: Country
    line2: Text | None = None


class NewCustomer(Body):
    external_id: ExternalId
    first_name: Name
    last_name: Name
    email: Email
    phone: Phone
    birth_date: date
    address: Address
    country: Country


class CustomerUpdate(Body):
    """Contact data only: names and birth date are the verified identity and do not change here."""

    email: Email | None = None
    phone: Phone | None = None
    address: Address | None = None


class Customer(Body):
    customer_id: uuid.UUID
    external_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    birth_date: date
    address: Address
    country: str
    kyc_status: KycStatus
    created_at: datetime
    updated_at: datetime


class Customers(Page, kw_only=True):
    items: list[Customer]


def customer_view(row) -> Customer:
    return Customer(
        customer_id=row["id"], external_id=row["external_id"], first_name=row["first_name"],
        last_name=row["last_name"], email=row["email"], phone=row["phone"], birth_date=row["birth_date"],
        address=msgspec.convert(row["address"], Address), country=row["country"],
        kyc_status=KycStatus(row["kyc_status"]), created_at=row["created_at"], updated_at=row["updated_at"],
    )


@route("POST", "/secure/customers", channel=Channel.PARTNER, body=NewCustomer, response=Customer, status=201,
       summary="Register a customer (kycStatus NOT_VERIFIED)", tags=("customers",))
async def create_customer(ctx: Context, body: NewCustomer) -> Customer:
    async with ctx.transaction() as conn:
        row = await repo.create_customer(conn, ctx.partner_id, msgspec.structs.asdict(body),
                                         today=ctx.services.clock().date())
        return customer_view(row)


@route("GET", "/secure/customers", channel=Channel.PARTNER, response=Customers,
       summary="List the partner's customers (cursor pagination)", tags=("customers",),
       page_size_max=PAGE_SIZE_MAX)
async def list_customers(ctx: Context, _: None) -> Customers:
    page = pages.request(repo.CUSTOMER_PAGES, ctx.request.query)
    rows, cursor = pages.cut(await repo.customers_page(ctx.pool, ctx.partner_id, page), page,
                             lambda r: (r["seq"],))
    return Customers(items=[customer_view(r) for r in rows], next_cursor=cursor)


@route("GET", "/secure/customers/{customerId}", channel=Channel.PARTNER, response=Customer,
       summary="Get a customer", tags=("customers",))
async def get_customer(ctx: Context, _: None) -> Customer:
    async with ctx.pool.acquire() as conn:
        return customer_view(await repo.get_customer(conn, ctx.partner_id, ctx.path_id("customerId")))


@route("PATCH", "/secure/customers/{customerId}", channel=Channel.PARTNER, body=CustomerUpdate, response=Customer,
       summary="Update a customer's contact data", tags=("customers",))
async def update_customer(ctx: Context, body: CustomerUpdate) -> Customer:
    customer_id = ctx.path_id("customerId")
    async with ctx.transaction() as conn:
        row = await repo.update_contact(conn, ctx.partner_id, customer_id, email=body.email,
                                        phone=body.phone, address=body.address)
        return customer_view(row)


@route("GET", "/customers/me", channel=Channel.CUSTOMER, response=Customer, summary="The signed-in customer",
       tags=("customers",))
async def me(ctx: Context, _: None) -> Customer:
    async with ctx.pool.acquire() as conn:
        return customer_view(await repo.get_customer(conn, ctx.partner_id, ctx.customer.customer_id))


# --- KYC -------------------------------------------------------------------------------------


class KycDocument(Body):
    """Identity document for Antaca's KYC. The number goes to the provider and is not stored."""

    document_type: Literal["PASSPORT", "ID_CARD", "DRIVING_LICENCE"]
    document_number: Annotated[str, Meta(pattern=r"^[A-Za-z0-9]{4,20}$")]
    document_country: Country


class KycResult(Body):
    customer_id: uuid.UUID
    kyc_status: KycStatus
    reason: str | None = None


class PartnerKyc(Body):
    """The result of the partner's own KYC."""

    status: Literal["VERIFIED", "REJECTED"]
    reason: Text | None = None


class KycEvent(Body):
    status: KycStatus
    source: str
    reason: str | None
    created_at: datetime


class KycHistory(Body):
    customer_id: uuid.UUID
    kyc_status: KycStatus
    history: list[KycEvent]


async def _register(ctx: Context, customer_id: uuid.UUID, body: KycDocument) -> KycResult:
    async with ctx.transaction() as conn:
        decision = await repo.run_antaca_kyc(
            conn, ctx.services.kyc_provider, ctx.partner_id, customer_id, msgspec.structs.asdict(body),
            ctx.services.clock().date(),
        )
    return KycResult(customer_id=customer_id, kyc_status=decision.status, reason=decision.reason)


@route("POST", "/secure/customers/{customerId}/register", channel=Channel.PARTNER, body=KycDocument,
       response=KycResult, summary="Start Antaca's KYC for a customer", tags=("kyc",))
async def register_by_partner(ctx: Context, body: KycDocument) -> KycResult:
    return await _register(ctx, ctx.path_id("customerId"), body)


@route("POST", "/customers/me/register", channel=Channel.CUSTOMER, body=KycDocument, response=KycResult,
       summary="Start Antaca's KYC from the app", tags=("kyc",))
async def register_by_app(ctx: Context, body: KycDocument) -> KycResult:
    return await _register(ctx, ctx.customer.customer_id, body)


@route("PUT", "/secure/customers/{customerId}/kyc", channel=Channel.PARTNER, body=PartnerKyc, response=KycResult,
       summary="Set the result of the partner's own KYC", tags=("kyc",))
async def set_kyc(ctx: Context, body: PartnerKyc) -> KycResult:
    customer_id = ctx.path_id("customerId")
    async with ctx.transaction() as conn:
        await repo.set_partner_kyc(conn, ctx.partner_id, customer_id, KycStatus(body.status),
                                   body.reason)
    return KycResult(customer_id=customer_id, kyc_status=KycStatus(body.status), reason=body.reason)


@route("GET", "/secure/customers/{customerId}/kyc", channel=Channel.PARTNER, response=KycHistory,
       summary="A customer's KYC status and history", tags=("kyc",))
async def kyc_history(ctx: Context, _: None) -> KycHistory:
    customer_id = ctx.path_id("customerId")
    async with ctx.pool.acquire() as conn:
        customer, rows = await repo.kyc_history(conn, ctx.partner_id, customer_id)
    return KycHistory(customer_id=customer_id, kyc_status=KycStatus(customer["kyc_status"]),
                      history=[KycEvent(**dict(r)) for r in rows])
