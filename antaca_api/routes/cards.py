"""Card endpoints for the three channels, and the card networks' lock ("lock outside")."""

from __future__ import annotations

import calendar
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from antaca_api import cards as repo
from antaca_api import corporations, pages, replacement
from antaca_api.customers import partner_of_customer
from antaca_api.domain_errors import (
    CardDataUnavailable,
    Conflict,
    Forbidden,
    InvalidPin,
    NotFound,
    PhysicalCardOnly,
    ProcessorFailure,
)
from antaca_api.errors import EncryptionRequired
from antaca_api.personalization import delivery_of
from antaca_api.replacement import DeliveryMethod, ReplacementReason
from antaca_api.routes.customers import Address
from antaca_api.routing import ADMIN_MANAGER, Channel, Context, Encryption, route
from antaca_api.schema import Body, Page
from antaca_auth import cardstate
from antaca_auth.cardstate import LOCK_REASONS, NETWORK_LOCK_REASONS, CardState
from antaca_auth.invariants import require
from antaca_auth.pans import PAN_PATTERN, mask_pan

JWE = Encryption.REQUIRED
# Issuing a virtual card: an unknown balance or program, a state that refuses it, the processor
# failing to generate it (a physical order it fails instead: the card is FAILED, with its reason).
ISSUING_ERRORS = (NotFound, Conflict, ProcessorFailure)


class NewVirtualCard(Body):
    balance_id: uuid.UUID
    program_id: uuid.UUID | None = None


class NewCorporateVirtualCard(Body):
    dc_corporation_id: uuid.UUID
    balance_id: uuid.UUID
    employee_id: uuid.UUID  # the holder: an employee of the corporation
    program_id: uuid.UUID | None = None


class NewPhysicalCard(Body):
    balance_id: uuid.UUID
    name_on_card: Annotated[str, Meta(min_length=1, max_length=26)]  # what fits on the plastic
    delivery_address: Address
    program_id: uuid.UUID | None = None
    delivery_method: DeliveryMethod = "POST"  # courier or post


class NewCorporatePhysicalCard(Body):
    dc_corporation_id: uuid.UUID
    balance_id: uuid.UUID
    employee_id: uuid.UUID  # the holder: an employee of the corporation
    name_on_card: Annotated[str, Meta(min_length=1, max_length=26)]
    delivery_address: Address
    program_id: uuid.UUID | None = None
    delivery_method: DeliveryMethod = "POST"


class NewCorporatePhysicalCardWithPin(NewCorporatePhysicalCard, kw_only=True):
    pin: Annotated[str, Meta(min_length=4, max_length=12)]


class CardSummary(Body):
    """What lists and administrators see: never more than the masked PAN."""

    card_id: uuid.UUID
    kind: Literal["VIRTUAL", "PHYSICAL"]
    status: CardState
    balance_id: uuid.UUID
    created_at: datetime
    masked_pan: str | None = None
    expiry: str | None = None  # MM/YY
    lock_reason: int | None = None
    failure_reason: str | None = None
    replaces_card_id: uuid.UUID | None = None  # the card this one replaced (or renews)
    replacement_reason: ReplacementReason | None = None


class CardData(Body):
    """Full card data, for the card holder's own encrypted response only.

    `id`, `type`, `cvv`, `cardNo` and `exp` are the product description's names for the card's
    id, kind, CVC2, PAN and expiry (the last day of the expiry month); `cardId`, `kind`, `cvc2`,
    `pan` and `expiry` (MM/YY) say the same under the names this API used first."""

    id: uuid.UUID
    type: Literal["VIRTUAL", "PHYSICAL"]
    cvv: str
    card_no: str
    exp: date
    card_id: uuid.UUID
    kind: Literal["VIRTUAL", "PHYSICAL"]
    status: CardState
    balance_id: uuid.UUID
    pan: str
    expiry: str  # MM/YY
    cvc2: str


class Cards(Page, kw_only=True):
    items: list[CardSummary]


def expiry_date(expiry: str) -> date:
    """A YYMM expiry as the date the card stops working after: the last day of its month."""
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    return date(year, month, calendar.monthrange(year, month)[1])


def _mmyy(expiry: str | None) -> str | None:
    return None if expiry is None else f"{expiry[2:]}/{expiry[:2]}"


def summary(row) -> CardSummary:
    masked = None if row["bin"] is None else f"{row['bin']}******{row['last4']}"
    return CardSummary(card_id=row["id"], kind=row["kind"], status=CardState(row["state"]),
                       balance_id=row["balance_id"], created_at=row["created_at"], masked_pan=masked,
                       expiry=_mmyy(row["expiry"]), lock_reason=row["lock_reason"],
                       failure_reason=row["failure_reason"],
                       replaces_card_id=row["replaces_card_id"],
                       replacement_reason=row["replacement_reason"])


def data_view(row, secrets: repo.CardSecrets, state: CardState | None = None) -> CardData:
    return CardData(id=row["id"], type=row["kind"], cvv=secrets.cvc2, card_no=secrets.pan,
                    exp=expiry_date(secrets.expiry), card_id=row["id"], kind=row["kind"],
                    status=state or CardState(row["state"]), balance_id=row["balance_id"],
                    pan=secrets.pan, expiry=_mmyy(secrets.expiry), cvc2=secrets.cvc2)


def actor(ctx: Context) -> str:
    if ctx.customer is not None:
        return f"customer:{ctx.customer.customer_id}"
    if ctx.admin is not None:
        return f"admin:{ctx.admin.admin_id}"
    if ctx.network_id is not None:
        return f"network:{ctx.network_id}"
    return f"partner:{ctx.partner_id}"


async def customer_holder(ctx: Context) -> repo.Holder:
    """The customer a card request is for: the app's user, the path's customer, or (admin) any."""
    if ctx.customer is not None:
        return repo.Holder(partner_id=ctx.partner_id, customer_id=ctx.customer.customer_id)
    customer_id = ctx.path_id("customerId")
    partner_id = ctx.partner_id
    if ctx.admin is not None:
        partner_id = await partner_of_customer(ctx.pool, customer_id)
        ctx.audit_target = f"customer:{customer_id}"
    return repo.Holder(partner_id=partner_id, customer_id=customer_id)


def scope(ctx: Context) -> repo.CardScope:
    if ctx.customer is not None:
        return repo.CardScope(ctx.partner_id, ctx.customer.customer_id)
    if ctx.admin is not None:  # a partner's staff member: that partner's cards only
        return repo.CardScope(ctx.admin.partner_id)
    if "customerId" in ctx.request.match_info:
        return repo.CardScope(ctx.partner_id, ctx.path_id("customerId"))
    if ctx.request.path.startswith(f"{CORPORATE}/"):  # /secure/cards/{cardId}/...
        return repo.CardScope(ctx.partner_id, corporate=True)
    return repo.CardScope(ctx.partner_id)  # /lifecycle/v1/cards/{cardId}: any of the partner's


def register(paths: list[tuple[str, Channel, frozenset | None]], method: str, **kw):
    """Declare one handler on several channels' paths."""

    def wrap(handler):
        for path, channel, roles in paths:
            extra = {"roles": roles} if roles is not None else {}
            route(method, path, channel=channel, **extra, **kw)(handler)
        return handler

    return wrap


ME, SECURE, ADMIN = "/customers/me/cards", "/secure/customers/{customerId}/cards", "/admin/cards"
CORPORATE = "/secure/cards"  # the partner's corporate cards, by card id


# --- issuing ---------------------------------------------------------------------------------


async def _virtual(ctx: Context, holder: repo.Holder, balance_id: uuid.UUID, program_id: uuid.UUID | None):
    row, secrets = await repo.issue_virtual(ctx.services, holder, balance_id, program_id,
                                            actor(ctx))
    if ctx.admin is not None:
        ctx.audit_target = f"card:{row['id']}"
        return summary(row)  # administrators never see card data
    return data_view(row, secrets)


# Administrators never see card data: their variants answer the masked card (CardSummary).
@route("POST", "/admin/customers/{customerId}/cards/virtual", channel=Channel.ADMIN,
       roles=ADMIN_MANAGER, body=NewVirtualCard, response=CardSummary, status=201, encryption=JWE,
       tags=("cards",), errors=ISSUING_ERRORS,
       summary="Issue a virtual card for a customer, ACTIVE at once; returns the masked card")
@register([(f"{ME}/virtual", Channel.CUSTOMER, None), (f"{SECURE}/virtual", Channel.PARTNER, None)],
          "POST", body=NewVirtualCard, response=CardData, status=201, encryption=JWE,
          tags=("cards",), errors=ISSUING_ERRORS,
          summary="Issue a virtual card, ACTIVE at once; returns its data")
async def issue_virtual(ctx: Context, body: NewVirtualCard):
    return await _virtual(ctx, await customer_holder(ctx), body.balance_id, body.program_id)


@route("POST", "/secure/cards/virtual", channel=Channel.PARTNER, body=NewCorporateVirtualCard, response=CardData,
       status=201, encryption=JWE, summary="Issue a corporate virtual card under the corporation's balance",
       tags=("cards",), errors=ISSUING_ERRORS)
async def issue_corporate_virtual(ctx: Context, body: NewCorporateVirtualCard) -> CardData:
    holder = repo.Holder(partner_id=ctx.partner_id, corporation_id=body.dc_corporation_id,
                         employee_id=body.employee_id)
    return await _virtual(ctx, holder, body.balance_id, body.program_id)


class PendingCard(Body):
    card_id: uuid.UUID
    status: CardState


@register([(f"{ME}/virtual/async", Channel.CUSTOMER, None), (f"{SECURE}/virtual/async", Channel.PARTNER, None)],
          "POST", body=NewVirtualCard, response=PendingCard, status=202, tags=("cards",),
          summary="Issue a virtual card in the background: 202 with the card id, PENDING")
async def issue_virtual_async(ctx: Context, body: NewVirtualCard) -> PendingCard:
    holder = await customer_holder(ctx)
    card_id = await repo.issue_virtual_in_background(ctx.services, holder, body.balance_id,
                                                     body.program_id, actor(ctx))
    return PendingCard(card_id=card_id, status=CardState.PENDING)


async def _physical(ctx: Context, holder: repo.Holder, body, pin: str | None = None) -> CardSummary:
    row = await repo.order_physical(
        ctx.services, holder, body.balance_id, body.program_id, actor(ctx),
        name_on_card=body.name_on_card, delivery_address=msgspec.to_builtins(body.delivery_address),
        delivery_method=body.delivery_method, pin=pin)
    if ctx.admin is not None:
        ctx.audit_target = f"card:{row['id']}"
    return summary(row)


@register([(f"{ME}/physical", Channel.CUSTOMER, None), (f"{SECURE}/physical", Channel.PARTNER, None),
           ("/admin/customers/{customerId}/cards/physical", Channel.ADMIN, None)], "POST",
          body=NewPhysicalCard, response=CardSummary, status=201, encryption=JWE, tags=("cards",),
          summary="Order a physical card: ORDERED until the processor's report links it, then INACTIVE")
async def order_physical(ctx: Context, body: NewPhysicalCard) -> CardSummary:
    return await _physical(ctx, await customer_holder(ctx), body)


@route("POST", "/secure/cards/physical", channel=Channel.PARTNER, body=NewCorporatePhysicalCard,
       response=CardSummary, status=201, encryption=JWE, summary="Order a corporate physical card", tags=("cards",))
async def order_corporate_physical(ctx: Context, body: NewCorporatePhysicalCard) -> CardSummary:
    holder = repo.Holder(ctx.partner_id, corporation_id=body.dc_corporation_id,
                         employee_id=body.employee_id)
    return await _physical(ctx, holder, body)


@route("POST", "/secure/cards/physical_with_pin", channel=Channel.PARTNER, body=NewCorporatePhysicalCardWithPin,
       response=CardSummary, status=201, encryption=Encryption.REQUEST,
       summary="Order a corporate physical card and set its PIN at order", tags=("cards",))
async def order_corporate_physical_with_pin(ctx: Context, body: NewCorporatePhysicalCardWithPin) -> CardSummary:
    problem = cardstate.pin_problem(body.pin)
    if problem is not None:  # checked before anything is ordered: a refused request leaves nothing
        raise InvalidPin(problem)
    holder = repo.Holder(ctx.partner_id, corporation_id=body.dc_corporation_id,
                         employee_id=body.employee_id)
    return await _physical(ctx, holder, body, pin=body.pin)


# --- reading ---------------------------------------------------------------------------------


@register([(ME, Channel.CUSTOMER, None), (SECURE, Channel.PARTNER, None),
           ("/admin/customers/{customerId}/cards", Channel.ADMIN, None)], "GET", response=Cards, tags=("cards",),
          summary="List a customer's cards (masked PAN only; ordered physical cards appear once linked)")
async def list_cards(ctx: Context, _: None) -> Cards:
    if ctx.admin is not None:
        customer_id, partner_id = ctx.path_id("customerId"), None
    else:
        s = scope(ctx)
        customer_id, partner_id = s.customer_id, s.partner_id
    hidden = ["ORDERED", "REMOVED"] if ctx.customer is not None else ["REMOVED"]
    page = pages.request(repo.CARD_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        # An unknown customer, or another partner's, is 404 as on every other customer route.
        rows = await repo.customer_cards(conn, customer_id, partner_id, hidden,
                                         check_customer=ctx.customer is None, page=page)
    return _card_page(rows, page)


def _card_page(rows, page: pages.PageRequest) -> Cards:
    shown, cursor = pages.cut(rows, page, lambda r: (r["seq"],))
    return Cards(items=[summary(r) for r in shown], next_cursor=cursor)


@route("GET", "/secure/cards", channel=Channel.PARTNER, response=Cards, tags=("cards",),
       summary="Every card of the partner, its customers' and its corporations', in issue order "
               "(masked PAN only; cursor pagination)")
async def list_partner_cards(ctx: Context, _: None) -> Cards:
    page = pages.request(repo.CARD_PAGES, ctx.request.query)
    async with ctx.pool.acquire() as conn:
        return _card_page(await repo.partner_cards(conn, ctx.partner_id, page), page)


async def _visible_card(ctx: Context, conn):
    return await repo.find_visible_card(conn, ctx.path_id("cardId"), scope(ctx),
                                        hide_ordered=ctx.customer is not None)


@register([(f"{ME}/{{cardId}}/status", Channel.CUSTOMER, None),
           (f"{SECURE}/{{cardId}}/status", Channel.PARTNER, None), (f"{ADMIN}/{{cardId}}", Channel.ADMIN, None)],
          "GET", response=CardSummary, tags=("cards",), summary="A card's status (no card data)")
async def card_status(ctx: Context, _: None) -> CardSummary:
    async with ctx.pool.acquire() as conn:
        return summary(await _visible_card(ctx, conn))


@register([(f"{ME}/{{cardId}}", Channel.CUSTOMER, None),
           (f"{SECURE}/{{cardId}}", Channel.PARTNER, None),
           (f"{CORPORATE}/{{cardId}}", Channel.PARTNER, None)], "GET",
          response=CardData, encryption=JWE, step_up=True, tags=("cards",),
          summary="Full card data: PAN, expiry, CVC2 (the app needs a fresh step-up proof)",
          errors=(NotFound, CardDataUnavailable))
async def card_data(ctx: Context, _: None) -> CardData:
    async with ctx.pool.acquire() as conn:
        row = await _visible_card(ctx, conn)
    return data_view(row, repo.card_secrets(ctx.services, row))


class CardHolder(Body):
    """The employee a corporate card names."""

    employee_id: uuid.UUID
    name: str
    email: str
    phone: str | None = None


class CorporateCard(CardSummary, kw_only=True):
    """A corporate card as its partner sees it: the summary, its corporation and its holder
    (null for a card issued before cards named employees)."""

    dc_corporation_id: uuid.UUID
    holder: CardHolder | None = None


def holder_view(employee) -> CardHolder | None:
    if employee is None:
        return None
    return CardHolder(employee_id=employee["id"], name=employee["name"], email=employee["email"],
                      phone=employee["phone"])


def corporate_view(row, employee) -> CorporateCard:
    base = msgspec.structs.asdict(summary(row))
    return CorporateCard(**base, dc_corporation_id=row["corporation_id"],
                         holder=holder_view(employee))


@route("GET", f"{CORPORATE}/{{cardId}}/status", channel=Channel.PARTNER, response=CorporateCard,
       tags=("cards",), summary="A corporate card's status and holder (no card data)")
async def corporate_card_status(ctx: Context, _: None) -> CorporateCard:
    async with ctx.pool.acquire() as conn:
        row, employee = await corporations.corporate_card(conn, ctx.partner_id,
                                                          ctx.path_id("cardId"))
    return corporate_view(row, employee)


class CardEvent(Body):
    event: str
    actor: str
    from_state: str | None
    to_state: str
    reason: int | None
    created_at: datetime


class CardEvents(Body):
    items: list[CardEvent]


@route("GET", "/admin/cards/{cardId}/events", channel=Channel.ADMIN, response=CardEvents, tags=("cards",),
       summary="Every state change of a card: who, when, from, to, why")
async def card_events(ctx: Context, _: None) -> CardEvents:
    rows = await repo.card_events(ctx.pool, ctx.path_id("cardId"))
    return CardEvents(items=[CardEvent(**dict(r)) for r in rows])


# --- operations ------------------------------------------------------------------------------


async def _transition(ctx: Context, rule, event: str, reason: int | None = None) -> CardSummary:
    card_id = ctx.path_id("cardId")
    async with ctx.transaction() as conn:
        row = await repo.transition(conn, card_id, scope(ctx),
                                    hide_ordered=ctx.customer is not None, rule=rule, event=event,
                                    actor=actor(ctx), reason=reason)
        if ctx.admin is not None:
            ctx.audit_target = f"card:{row['id']}"
        return summary(row)


class Activation(Body):
    """An activation's optional PIN, set in the same transaction (a PIN must come in a JWE)."""

    pin: Annotated[str, Meta(min_length=4, max_length=12)] | None = None


def _encrypted_request(ctx: Context) -> bool:
    return ctx.request.headers.get("Encrypted-Request", "").strip().lower() == "true"


@register([(f"{ME}/{{cardId}}/activate", Channel.CUSTOMER, None),
           (f"{SECURE}/{{cardId}}/activate", Channel.PARTNER, None),
           (f"{CORPORATE}/{{cardId}}/activate", Channel.PARTNER, None),
           (f"{ADMIN}/{{cardId}}/activate", Channel.ADMIN, None)], "POST", body=Activation,
          response=CardSummary, tags=("cards",),
          summary="Activate a delivered physical card; with `pin` (JWE request), set its PIN too")
async def activate(ctx: Context, body: Activation) -> CardSummary:
    if body.pin is not None and ctx.admin is not None:
        raise Forbidden("administrators never set a card's PIN")  # the product: PIN set, admin N/A
    if body.pin is not None and not _encrypted_request(ctx):
        raise EncryptionRequired()  # a PIN never travels in clear
    async with ctx.transaction() as conn:
        row = await repo.activate_card(ctx.services, conn, ctx.path_id("cardId"), scope(ctx),
                                       hide_ordered=ctx.customer is not None, actor=actor(ctx),
                                       pin=body.pin)
        if ctx.admin is not None:
            ctx.audit_target = f"card:{row['id']}"
        return summary(row)


class Replacement(Body):
    """Why a card is replaced; a physical card's successor goes to the old card's address by its
    delivery method unless others are given."""

    reason: ReplacementReason
    delivery_method: DeliveryMethod | None = None
    delivery_address: Address | None = None


@register([(f"{ME}/{{cardId}}/replace", Channel.CUSTOMER, None),
           (f"{SECURE}/{{cardId}}/replace", Channel.PARTNER, None),
           (f"{CORPORATE}/{{cardId}}/replace", Channel.PARTNER, None),
           (f"{ADMIN}/{{cardId}}/replace", Channel.ADMIN, None)], "POST", body=Replacement,
          response=CardSummary, status=201, tags=("cards",),
          summary="Replace a card (lost, stolen, damaged, renewal): the old one is locked for good "
                  "(reason 8), the new one (answered) has a new PAN, expiry and CVC2 on the same "
                  "balance; a physical one is ordered")
async def replace(ctx: Context, body: Replacement) -> CardSummary:
    address = None if body.delivery_address is None else msgspec.to_builtins(body.delivery_address)
    row = await replacement.replace_card(
        ctx.services, ctx.path_id("cardId"), scope(ctx), hide_ordered=ctx.customer is not None,
        reason=body.reason, actor=actor(ctx), delivery_method=body.delivery_method,
        delivery_address=address)
    if ctx.admin is not None:
        ctx.audit_target = f"card:{row['replaces_card_id']}"
    return summary(row)


class Delivery(Body):
    """A physical card's way to its holder: ORDERED (in production), LINKED (personalized and
    linked), SHIPPED, DELIVERED, or FAILED."""

    card_id: uuid.UUID
    delivery_method: DeliveryMethod
    delivery_address: Address
    status: Literal["ORDERED", "LINKED", "SHIPPED", "DELIVERED", "FAILED"]
    updated_at: datetime


@register([(f"{ME}/{{cardId}}/delivery", Channel.CUSTOMER, None),
           (f"{SECURE}/{{cardId}}/delivery", Channel.PARTNER, None),
           (f"{CORPORATE}/{{cardId}}/delivery", Channel.PARTNER, None),
           (f"{ADMIN}/{{cardId}}/delivery", Channel.ADMIN, None)], "GET", response=Delivery,
          tags=("cards",), errors=(NotFound, PhysicalCardOnly),
          summary="A physical card's delivery: method, address and tracking status (the holder "
                  "sees it from the order on)")
async def delivery(ctx: Context, _: None) -> Delivery:
    async with ctx.pool.acquire() as conn:
        # The holder follows their own order before the card is linked to them.
        card = await repo.find_visible_card(conn, ctx.path_id("cardId"), scope(ctx),
                                            hide_ordered=False)
        order = await delivery_of(conn, card["id"])
    if order is None:
        raise PhysicalCardOnly()
    return Delivery(card_id=order["card_id"], delivery_method=order["delivery_method"],
                    delivery_address=msgspec.convert(order["delivery_address"], Address),
                    status=order["status"], updated_at=order["updated_at"])


LockCode = Literal[1, 2, 3, 4, 5, 6, 7, 8, 11]


class Lock(Body):
    reason: LockCode


@register([(f"{ME}/{{cardId}}/lock", Channel.CUSTOMER, None), (f"{SECURE}/{{cardId}}/lock", Channel.PARTNER, None),
           (f"{CORPORATE}/{{cardId}}/lock", Channel.PARTNER, None),
           (f"{ADMIN}/{{cardId}}/lock", Channel.ADMIN, None)], "POST", body=Lock, response=CardSummary,
          tags=("cards",), summary="Lock a card with a reason code (1, 2, 5 and 8 are irreversible)")
async def lock(ctx: Context, body: Lock) -> CardSummary:
    return await _transition(ctx, lambda s: cardstate.lock(s, body.reason), "LOCKED", body.reason)


@register([(f"{ME}/{{cardId}}/unlock", Channel.CUSTOMER, None),
           (f"{SECURE}/{{cardId}}/unlock", Channel.PARTNER, None),
           (f"{CORPORATE}/{{cardId}}/unlock", Channel.PARTNER, None),
           (f"{ADMIN}/{{cardId}}/unlock", Channel.ADMIN, None)], "POST", response=CardSummary, tags=("cards",),
          summary="Unlock a card (refused for irreversible lock reasons)")
async def unlock(ctx: Context, _: None) -> CardSummary:
    return await _transition(ctx, cardstate.unlock, "UNLOCKED")


@register([(f"{ME}/{{cardId}}", Channel.CUSTOMER, None),
           (f"{ADMIN}/{{cardId}}", Channel.ADMIN, None),
           (f"{CORPORATE}/{{cardId}}", Channel.PARTNER, None),
           (f"{SECURE}/{{cardId}}", Channel.PARTNER, None),
           ("/lifecycle/v1/cards/{cardId}", Channel.PARTNER, None)], "DELETE",
          response=CardSummary, tags=("cards",), summary="Remove a card: final, it can never be restored or used")
async def remove(ctx: Context, _: None) -> CardSummary:
    return await _transition(ctx, cardstate.remove, "REMOVED")


@route("POST", f"{ADMIN}/{{cardId}}/cvv", channel=Channel.ADMIN, response=CardSummary,
       encryption=JWE, tags=("cards",),
       summary="Issue a new CVC2 for a virtual card (the holder reads it in the app); masked card")
@register([(f"{ME}/{{cardId}}/cvv", Channel.CUSTOMER, None),
           (f"{CORPORATE}/{{cardId}}/cvv", Channel.PARTNER, None)],
          "POST", response=CardData, encryption=JWE, step_up=True, tags=("cards",),
          summary="Issue a new CVC2 for a virtual card; the previous one stops working at once "
                  "(the app needs a fresh step-up proof)")
async def reset_cvv(ctx: Context, _: None):
    card_id = ctx.path_id("cardId")
    async with ctx.transaction() as conn:
        row = await repo.reset_visible_cvv(conn, card_id, scope(ctx),
                                           hide_ordered=ctx.customer is not None, actor=actor(ctx))
    if ctx.admin is not None:
        ctx.audit_target = f"card:{row['id']}"
        return summary(row)  # the holder reads the new CVC2 in their app
    return data_view(row, repo.card_secrets(ctx.services, row))


class SetPin(Body):
    pin: Annotated[str, Meta(min_length=4, max_length=12)]


@register([(f"{ME}/{{cardId}}/pin", Channel.CUSTOMER, None),
           (f"{CORPORATE}/{{cardId}}/pin", Channel.PARTNER, None)], "POST", body=SetPin,
          encryption=Encryption.REQUEST, step_up=True, tags=("cards",),
          summary="Set the card's PIN (4-12 digits, not trivial; sent as a JWE, after a fresh "
               "step-up); only a verification value is kept")
async def set_pin(ctx: Context, body: SetPin) -> None:
    card_id = ctx.path_id("cardId")
    async with ctx.transaction() as conn:
        await repo.set_visible_pin(ctx.services, conn, card_id, scope(ctx),
                                   hide_ordered=ctx.customer is not None, pin=body.pin,
                                   actor=actor(ctx))


# --- network channel -------------------------------------------------------------------------


class NetworkLock(Body):
    pan: Annotated[str, Meta(pattern=PAN_PATTERN)]
    reason: Literal[1, 2, 3, 4, 5, 6, 7, 8]


class NetworkLockResult(Body):
    masked_pan: str
    status: CardState
    lock_reason: int
    action_code: str


@route("POST", "/network/cards/lock", channel=Channel.NETWORK, body=NetworkLock, response=NetworkLockResult,
       tags=("network",), summary="A card network or acquirer locks a card by PAN")
async def network_lock(ctx: Context, body: NetworkLock) -> NetworkLockResult:
    require(body.reason in NETWORK_LOCK_REASONS, "the schema admits only the network's reasons")
    fingerprint = ctx.services.card_keys.fingerprint(body.pan)
    async with ctx.transaction() as conn:
        await repo.network_lock(conn, fingerprint, body.reason, actor(ctx))
    return NetworkLockResult(masked_pan=mask_pan(body.pan), status=CardState.LOCKED, lock_reason=body.reason,
                             action_code=LOCK_REASONS[body.reason].action_code)
