"""The panel's pages: each decodes the request, calls the domain functions the admin API calls,
and renders a template. No SQL here (tests/unit/test_architecture.py); the rules each page
follows are declared with `access.page` and checked by the panel's middleware before it runs."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import aiohttp_jinja2
import msgspec
from aiohttp import web

from antaca_api import (
    admins,
    card_transactions,
    customer_service,
    fee_schedules,
    pages,
    rate_limits,
    webhooks,
)
from antaca_api import cards as card_repo
from antaca_api import corporations as corporation_repo
from antaca_api import customers as customer_repo
from antaca_api import partner_balances as partner_balance_repo
from antaca_api import partners as partner_repo
from antaca_api import programs as program_repo
from antaca_api import summaries as summary_repo
from antaca_api.admins import Role
from antaca_api.balances import amounts as balance_amounts
from antaca_api.cards import CardScope
from antaca_api.corporations import KybStatus
from antaca_api.customers import ReviewDecision
from antaca_api.domain_errors import (
    AccountLocked,
    DomainError,
    InvalidCredentials,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from antaca_api.errors import status_of as error_status
from antaca_api.panel import access, figures, security
from antaca_api.panel.access import Rule, page
from antaca_api.panel.charts import Bar, bar_chart
from antaca_api.routes.admin import AdminChange, NewAdmin, PasswordChange
from antaca_api.routes.partner_balances import PartnerReload, ThresholdChange
from antaca_api.routes.partner_balances import view as partner_balance_view
from antaca_api.routes.partners import SERIAL, PartnerContact
from antaca_api.services import Services
from antaca_auth import cardstate
from antaca_auth import fees as pricing
from antaca_auth.codes import code_name

SERVICES = web.AppKey("panel_services", Services)
USER = web.RequestKey("panel_user", access.PanelUser)
SAMPLE_AMOUNT = web.RequestKey("panel_sample_amount", int)
customer_page_size = 25
search_text_max = 254  # characters of a search field read (an e-mail address's maximum)
audit_page_size = 50
corporation_page_size = 25
statement_page_size = 50
# The lock reasons an administrator may give (the admin API's Lock body).
ADMIN_LOCK_REASONS = (1, 2, 3, 4, 5, 6, 7, 8, 11)


def services_of(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


def user_of(request: web.Request) -> access.PanelUser:
    return request[USER]


def render(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    user = request.get(USER)
    context.setdefault("errors", {})
    return aiohttp_jinja2.render_template(
        template, request, {"user": user, "csrf": user.csrf if user else None,
                            "may": (lambda *a, **k: access.may(user, *a, **k)) if user else None,
                            **context}, status=status)


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def public(handler):
    handler.panel_public = True
    return handler


# --- sign-in -------------------------------------------------------------------------------


@public
async def sign_in_form(request: web.Request) -> web.Response:
    return _sign_in_page(request, {})


def _sign_in_page(request: web.Request, errors: dict[str, str], status: int = 200,
                  email: str = "") -> web.Response:
    token = security.new_sign_in_token()
    response = render(request, "sign_in.html", status, sign_in_token=token, errors=errors,
                      email=email)
    response.set_cookie(security.SIGN_IN_COOKIE, token, **security.cookie_flags(request.secure))
    return response


@dataclass(frozen=True)
class SignIn:
    email: str


@dataclass(frozen=True)
class SignInContext:
    """What rate_limits.guarded reads of a request: the services and the caller's address."""

    services: Services
    request: web.Request


@public
async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not security.csrf_matches(request.cookies.get(security.SIGN_IN_COOKIE),
                                 form.get(security.CSRF_FIELD)):
        return _sign_in_page(request, {"form": "the form expired: sign in again"}, 403)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    services = services_of(request)

    async def open_session(admit: rate_limits.Admit):
        admit(SignIn(email))  # the admin API's sign-in limits and lockout, on the same account
        return await admins.open_session(
            services.pool, email, password, services.clock(), services.settings.admin_session_ttl,
            background_cpu=services.background_cpu)

    try:
        token, _, _, _ = await rate_limits.guarded(SignInContext(services, request),
                                                   rate_limits.ADMIN_SIGN_IN, open_session)
    except InvalidCredentials as exc:
        return _sign_in_page(request, {"password": exc.message}, 401, email)
    except (RateLimited, AccountLocked) as exc:
        page = _sign_in_page(request, {"password": exc.message}, 429, email)
        page.headers["Retry-After"] = str(exc.retry_after_seconds)
        return page
    response = redirect(f"{security.PANEL_PREFIX}/")
    response.set_cookie(security.SESSION_COOKIE, token, **security.cookie_flags(request.secure))
    response.del_cookie(security.SIGN_IN_COOKIE, path=security.COOKIE_PATH)
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    async with services_of(request).pool.acquire() as conn:
        await admins.revoke_session(conn, request.cookies.get(security.SESSION_COOKIE, ""))
    response = redirect(f"{security.PANEL_PREFIX}/sign-in")
    response.del_cookie(security.SESSION_COOKIE, path=security.COOKIE_PATH)
    raise response


# --- dashboard -----------------------------------------------------------------------------


async def dashboard(request: web.Request) -> web.Response:
    """The platform's summaries (GET /admin/summaries) or, for a partner's staff, their
    partner's (GET /admin/partners/{partnerId}/summaries, their own partner: always in scope)."""
    user, services = user_of(request), services_of(request)
    now = services.clock()
    async with services.pool.acquire() as conn:
        if user.platform_staff:
            summaries = await summary_repo.global_summaries(conn)
        else:
            summaries = await summary_repo.partner_summaries(conn, user.partner_id)
        today = figures.outcomes(await card_transactions.outcomes_since(
            conn, figures.start_of_day(now), user.partner_id))
        hourly = await card_transactions.hourly_since(
            conn, now - timedelta(hours=figures.chart_hours), user.partner_id)
    chart = bar_chart(figures.hourly_bars(hourly, now),
                      "Authorizations per hour, last 24 hours (approved part darker)")
    return render(request, "dashboard.html", summaries=summaries.items, today=today, chart=chart)


# --- customers -----------------------------------------------------------------------------


@page("GET", "/admin/customers")
async def customers(request: web.Request) -> web.Response:
    query = request.query
    criteria = {name: (query.get(name) or "").strip()[:search_text_max] or None
                for name in ("name", "email", "phone")}
    page_request = _page(request, customer_repo.CUSTOMER_PAGES, customer_page_size)
    rows = await customer_repo.search(
        services_of(request).pool, partner_scope=user_of(request).partner_id, partner_id=None,
        page=page_request, **criteria)
    shown, next_cursor = pages.cut(rows, page_request, pages.seq_position)
    return render(request, "customers.html", rows=shown, criteria=criteria,
                  next_cursor=next_cursor)


def _page(request: web.Request, keyset: pages.Keyset, limit: int) -> pages.PageRequest:
    """The page of `keyset`'s list asked for by the query's opaque `cursor` (none: the first)."""
    return pages.request(keyset, request.query.get("cursor") or None, limit)


def _cursor(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        return max(int(raw), 0)
    except ValueError:
        raise ValidationFailed("the page cursor is not valid") from None


@page("GET", "/admin/customers/{customerId}")
async def customer(request: web.Request, errors: dict[str, str] | None = None,
                   status: int = 200) -> web.Response:
    services, user = services_of(request), user_of(request)
    customer_id = access.path_id(request)("customerId")
    page_request = _page(request, card_transactions.TRANSACTION_PAGES,
                         pages.page_size_default)
    async with services.pool.acquire() as conn:
        found = await customer_service.customer_file(conn, user.partner_id, customer_id)
        transactions = await customer_service.customer_transactions(
            conn, user.partner_id, customer_id, page_request)
    shown, next_cursor = pages.cut(transactions, page_request, lambda r: (r["seq"],))
    return render(request, "customer.html", status, file=found, transactions=shown,
                  next_cursor=next_cursor, errors=errors or {},
                  masked=_masked, decisions=list(ReviewDecision), amounts=balance_amounts)


def _masked(card) -> str:
    """A card's masked PAN (first six, last four), never more."""
    return "-" if card["bin"] is None else f"{card['bin']}******{card['last4']}"


@page("POST", "/admin/customers/{customerId}/kyc", acts=True)
async def review_kyc(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    customer_id = access.path_id(request)("customerId")
    errors = {}
    decision = form.get("decision")
    reason = (form.get("reason") or "").strip() or None
    if decision not in set(ReviewDecision):
        errors["decision"] = "choose approve or reject"
    elif decision == ReviewDecision.REJECT and reason is None:
        errors["reason"] = "a rejection needs a reason"
    if form.get("confirm") != "yes":
        errors["confirm"] = "tick the box to confirm the decision"
    if errors:
        return await customer(request, errors, 422)
    try:
        await _review(request, customer_id, ReviewDecision(decision), reason)
    except DomainError as exc:
        return await customer(request, {"decision": exc.message}, 409)
    raise redirect(f"{security.PANEL_PREFIX}/customers/{customer_id}")


async def _review(request: web.Request, customer_id: uuid.UUID, decision: ReviewDecision,
                  reason: str | None) -> None:
    user = user_of(request)
    async with services_of(request).pool.acquire() as conn, conn.transaction():
        await customer_repo.review_kyc(conn, user.partner_id, customer_id, decision, reason,
                                       user.admin_id)
        await access.audit(conn, user, request.match_info.handler.panel_rule,
                           f"customer:{customer_id}")


# --- cards ---------------------------------------------------------------------------------


async def find_cards(request: web.Request) -> web.StreamResponse:
    """By id (its page, under GET /admin/cards/{cardId}/events' rules), or by the last four
    digits and the expiry (MM/YY) within the caller's scope."""
    query, user = request.query, user_of(request)
    card_id = (query.get("cardId") or "").strip()
    last_four, expiry = (query.get("lastFour") or "").strip(), (query.get("expiry") or "").strip()
    errors: dict[str, str] = {}
    rows = []
    if card_id:
        try:
            raise redirect(f"{security.PANEL_PREFIX}/cards/{uuid.UUID(card_id)}")
        except ValueError:
            errors["cardId"] = "a card id (UUID)"
    if last_four or expiry:
        if not (len(last_four) == 4 and last_four.isdigit()):
            errors["lastFour"] = "four digits"
        yymm = _yymm(expiry)
        if yymm is None:
            errors["expiry"] = "MM/YY, e.g. 07/29"
        if not errors:
            rows = await card_repo.cards_by_last_four(services_of(request).pool, last_four, yymm,
                                                      user.partner_id)
    return render(request, "cards.html", 422 if errors else 200, rows=rows, errors=errors,
                  last_four=last_four, expiry=expiry, masked=_masked, mmyy=_mmyy,
                  searched=bool(last_four or expiry))


def _yymm(mm_yy: str) -> str | None:
    """MM/YY as the cards' YYMM, or None when it is not a month."""
    month, _, year = mm_yy.partition("/")
    if not (len(month) == 2 and len(year) == 2 and month.isdigit() and year.isdigit()):
        return None
    return f"{year}{month}" if 1 <= int(month) <= 12 else None


def _mmyy(yymm: str | None) -> str:
    return "-" if yymm is None else f"{yymm[2:]}/{yymm[:2]}"


@page("GET", "/admin/cards/{cardId}/events")
async def card(request: web.Request, errors: dict[str, str] | None = None,
               status: int = 200) -> web.Response:
    user, card_id = user_of(request), access.path_id(request)("cardId")
    async with services_of(request).pool.acquire() as conn:
        row = await card_repo.find_visible_card(conn, card_id, CardScope(user.partner_id),
                                                hide_ordered=False)
        events = await card_repo.card_events(conn, card_id)
    reasons = [cardstate.LOCK_REASONS[code] for code in ADMIN_LOCK_REASONS]
    return render(request, "card.html", status, card=row, events=events, masked=_masked,
                  mmyy=_mmyy, reasons=reasons, errors=errors or {},
                  lock_reason=cardstate.LOCK_REASONS.get(row["lock_reason"]))


def _lock_reason(form) -> int | None:
    try:
        code = int(form.get("reason", ""))
    except ValueError:
        return None
    return code if code in ADMIN_LOCK_REASONS else None


@page("POST", "/admin/cards/{cardId}/lock", acts=True)
async def lock_card(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    reason = _lock_reason(form)
    errors = {}
    if reason is None:
        errors["reason"] = "choose a reason"
    if form.get("confirm") != "yes":
        errors["confirm"] = "tick the box to confirm the lock"
    elif reason is not None and cardstate.LOCK_REASONS[reason].irreversible \
            and form.get("confirmIrreversible") != "yes":
        errors["confirmIrreversible"] = "this reason locks the card for good: confirm it too"
    if errors:
        return await card(request, errors, 422)
    return await _transition(request, "LOCKED", lambda s: cardstate.lock(s, reason), reason)


@page("POST", "/admin/cards/{cardId}/unlock", acts=True)
async def unlock_card(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if form.get("confirm") != "yes":
        return await card(request, {"unlock": "tick the box to confirm the unlock"}, 422)
    return await _transition(request, "UNLOCKED", cardstate.unlock, None)


async def _transition(request: web.Request, event: str, rule, reason: int | None
                      ) -> web.StreamResponse:
    """The admin API's card transition (cards.transition), audited in its transaction."""
    user, card_id = user_of(request), access.path_id(request)("cardId")
    try:
        async with services_of(request).pool.acquire() as conn, conn.transaction():
            await card_repo.transition(conn, card_id, CardScope(user.partner_id),
                                       hide_ordered=False, rule=rule, event=event,
                                       actor=f"admin:{user.admin_id}", reason=reason)
            await access.audit(conn, user, request.match_info.handler.panel_rule,
                               f"card:{card_id}")
    except DomainError as exc:  # the state refuses it (e.g. an irreversible lock)
        return await card(request, {"reason" if reason else "unlock": exc.message}, 409)
    raise redirect(f"{security.PANEL_PREFIX}/cards/{card_id}")


# --- programs and fee schedules ------------------------------------------------------------


@page("GET", "/admin/programs")
async def programs(request: web.Request) -> web.Response:
    page_request = _page(request, program_repo.PROGRAM_PAGES, pages.page_size_default)
    rows = await program_repo.all_programs(services_of(request).pool, page_request,
                                           user_of(request).partner_id)
    shown, next_cursor = pages.cut(rows, page_request, lambda r: (r["created_at"], r["id"]))
    return render(request, "programs.html", rows=shown, next_cursor=next_cursor)


SAMPLE_TYPES = ("POS", "ECOM", "ATM")
sample_amount_default = 10_000  # minor units: what the preview prices when none is given
sample_amount_max = 10**12


@page("GET", "/admin/programs/{programId}/fees")
async def fees(request: web.Request, errors: dict[str, str] | None = None, status: int = 200,
               draft: str | None = None, preview=None) -> web.Response:
    services, program_id = services_of(request), access.path_id(request)("programId")
    program = await program_repo.find(services.pool, program_id)
    async with services.pool.acquire() as conn:
        found = await fee_schedules.versions(conn, program_id, services.clock())
    versions = [(r, pricing.decode_schedule(r["schedule"])) for r in found.rows]
    if draft is None:
        current = next((s for r, s in versions if r["id"] == found.in_force), pricing.FeeSchedule())
        draft = msgspec.json.format(msgspec.json.encode(current), indent=2).decode()
    return render(request, "fees.html", status, program=program, versions=versions,
                  in_force=found.in_force, draft=draft, preview=preview, errors=errors or {},
                  encode=lambda s: msgspec.json.encode(s).decode(),
                  sample_amount=request.get(SAMPLE_AMOUNT, sample_amount_default))


def fee_preview(schedule: pricing.FeeSchedule, amount: int) -> list[tuple[str, int, int]]:
    """What a sample payment of `amount` minor units would cost under the schedule, per type:
    (type, fee, total), without waivers or a currency conversion."""
    rows = []
    for tx_type in SAMPLE_TYPES:
        fee = pricing.transaction_fee(pricing.spec_for(schedule, pricing.FeeType(tx_type)), amount)
        rows.append((tx_type, fee, amount + fee))
    return rows


def decode_draft(text: str) -> tuple[pricing.FeeSchedule | None, str | None]:
    """A schedule typed as JSON (the admin API's FeeSchedule), or why it is not one."""
    try:
        schedule = msgspec.json.decode(text.encode(), type=pricing.FeeSchedule)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return None, str(exc)
    found = pricing.problems(schedule)
    return (None, "; ".join(found)) if found else (schedule, None)


def _sample_amount(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and 0 < int(raw) <= sample_amount_max else None


@page("POST", "/admin/programs/{programId}/fees", acts=True)
async def publish_fees(request: web.Request) -> web.StreamResponse:
    """Preview (nothing written) or publish a new version from now; publishing asks for the
    confirmation box."""
    form = await request.post()
    draft = str(form.get("schedule", ""))
    schedule, problem = decode_draft(draft)
    amount = _sample_amount(str(form.get("sampleAmount", sample_amount_default)))
    errors = {}
    if schedule is None:
        errors["schedule"] = problem
    if amount is None:
        errors["sampleAmount"] = f"a whole number of minor units from 1 to {sample_amount_max}"
    else:
        request[SAMPLE_AMOUNT] = amount
    publishing = form.get("action") == "publish"
    if publishing and form.get("confirm") != "yes":
        errors["confirm"] = "tick the box to confirm the new version"
    preview = fee_preview(schedule, amount) if schedule and amount else None
    if errors or not publishing:
        return await fees(request, errors, 422 if errors else 200, draft, preview)
    version = await _publish(request, schedule)
    raise redirect(f"{security.PANEL_PREFIX}/programs/{version['program_id']}/fees")


async def _publish(request: web.Request, schedule: pricing.FeeSchedule):
    services, user = services_of(request), user_of(request)
    program_id = access.path_id(request)("programId")
    async with services.pool.acquire() as conn, conn.transaction():
        row = await fee_schedules.publish(conn, services.ledger, program_id, schedule,
                                          services.clock(), user.admin_id)
        await access.audit(conn, user, request.match_info.handler.panel_rule,
                           f"fee-schedule:{row['id']}")
    return row


# --- administration (Admin only) -----------------------------------------------------------


@page("GET", "/admin/audit-log")
async def audit_log(request: web.Request) -> web.Response:
    page_request = _page(request, admins.AUDIT_PAGES, audit_page_size)
    rows = await admins.audit_entries(services_of(request).pool, page_request)
    shown, next_cursor = pages.cut(rows, page_request, pages.id_position)
    return render(request, "audit_log.html", rows=shown, next_cursor=next_cursor)


@page("GET", "/admin/users")
async def users(request: web.Request, errors: dict[str, str] | None = None,
                status: int = 200) -> web.Response:
    return render(request, "users.html", status,
                  rows=await admins.admin_users(services_of(request).pool), roles=list(Role),
                  errors=errors or {})


def forbidden_page(request: web.Request, error: DomainError, status: int) -> web.Response:
    return render(request, "error.html", status, error=error)


def rule_of(request: web.Request) -> Rule | None:
    return getattr(request.match_info.handler, "panel_rule", None)


# --- partners ------------------------------------------------------------------------------


@page("GET", "/admin/partners")
async def partners(request: web.Request) -> web.Response:
    page_request = _page(request, partner_repo.PARTNER_PAGES, pages.page_size_default)
    rows = await partner_repo.all_partners(services_of(request).pool, page_request,
                                           user_of(request).partner_id)
    shown, next_cursor = pages.cut(rows, page_request, lambda r: (r["created_at"], r["id"]))
    return render(request, "partners.html", rows=shown, next_cursor=next_cursor)


@page("GET", "/admin/partners/{partnerId}")
async def partner(request: web.Request, errors: dict[str, str] | None = None,
                  status: int = 200) -> web.Response:
    partner_id = access.path_id(request)("partnerId")
    first_page = pages.PageRequest(partner_balance_repo.PARTNER_BALANCE_PAGES,
                                   pages.page_size_max, None)
    async with services_of(request).pool.acquire() as conn:
        row = await partner_repo.find(conn, partner_id)
        balances = await partner_balance_repo.balances_of_partner(conn, partner_id, first_page)
        summaries = await summary_repo.partner_summaries(conn, partner_id)
    endpoints = await webhooks.endpoints_of(services_of(request).pool, partner_id)
    return render(request, "partner.html", status, partner=row, summaries=summaries.items,
                  endpoints=endpoints, errors=errors or {},
                  balances=[partner_balance_view(b) for b in balances[:pages.page_size_max]])


@page("GET", "/admin/partners/{partnerId}/balances/{balanceId}/statement")
async def partner_statement(request: web.Request, errors: dict[str, str] | None = None,
                            status: int = 200) -> web.Response:
    ids = access.path_id(request)
    page_request = _page(request, partner_balance_repo.STATEMENT_PAGES, statement_page_size)
    row, statement = await partner_balance_repo.statement(
        services_of(request).pool, services_of(request).ledger, ids("partnerId"), ids("balanceId"),
        page_request)
    entries, next_cursor = pages.cut(statement.entries, page_request, lambda e: (e.seq,))
    chart = bar_chart([Bar(e.transfer.created_at.strftime("%d.%m") if i % 10 == 0 else "",
                           max(e.available, 0)) for i, e in enumerate(entries)],
                      "The balance's available amount after each line of this page")
    return render(request, "partner_statement.html", status, balance=partner_balance_view(row),
                  entries=entries, next_cursor=next_cursor, code_name=code_name,
                  errors=errors or {}, chart=chart)


# --- corporations --------------------------------------------------------------------------


@page("GET", "/admin/corporations")
async def corporations(request: web.Request) -> web.Response:
    status = request.query.get("kybStatus") or None
    if status is not None and status not in KybStatus.__members__:
        raise ValidationFailed("choose a KYB status from the list")
    page_request = _page(request, corporation_repo.CORPORATION_PAGES, corporation_page_size)
    rows = await corporation_repo.corporations_by_status(
        services_of(request).pool, status, page_request,
        partner_scope=user_of(request).partner_id)
    shown, next_cursor = pages.cut(rows, page_request, pages.seq_position)
    return render(request, "corporations.html", rows=shown, kyb_status=status,
                  statuses=list(KybStatus), next_cursor=next_cursor)


@page("GET", "/admin/corporations/{dcCorporationId}")
async def corporation(request: web.Request, errors: dict[str, str] | None = None,
                      status: int = 200) -> web.Response:
    corporation_id = access.path_id(request)("dcCorporationId")
    async with services_of(request).pool.acquire() as conn:
        row, documents, history = await corporation_repo.review_file(conn, corporation_id)
    return render(request, "corporation.html", status, corporation=row, documents=documents,
                  history=history, errors=errors or {},
                  decisions=[s for s in KybStatus if s is not KybStatus.SUBMITTED])


@page("POST", "/admin/corporations/{dcCorporationId}/kyb", acts=True)
async def decide_kyb(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    user, corporation_id = user_of(request), access.path_id(request)("dcCorporationId")
    decision = form.get("decision")
    reason = (form.get("reason") or "").strip() or None
    if decision not in KybStatus.__members__ or decision == KybStatus.SUBMITTED:
        return await corporation(request, {"decision": "choose a decision"}, 422)
    if form.get("confirm") != "yes":
        return await corporation(request, {"confirm": "tick the box to confirm the decision"},
                                 422)
    try:
        async with services_of(request).pool.acquire() as conn, conn.transaction():
            await corporation_repo.decide_kyb(conn, corporation_id, KybStatus(decision), reason,
                                              user.admin_id)
            await access.audit(conn, user, rule_of(request), f"corporation:{corporation_id}")
    except DomainError as exc:
        return await corporation(request, {"decision": exc.message}, error_status(exc))
    raise redirect(f"{security.PANEL_PREFIX}/corporations/{corporation_id}")


@page("GET", "/admin/corporations/{dcCorporationId}/documents/{documentId}")
async def corporation_document(request: web.Request) -> web.Response:
    """The document as uploaded, as a download (never shown inline: it is the uploader's file)."""
    ids, user = access.path_id(request), user_of(request)
    services = services_of(request)
    async with services.pool.acquire() as conn:
        row, content = await corporation_repo.document_content(
            conn, ids("dcCorporationId"), ids("documentId"), user.partner_id, services.card_keys)
    filename = "".join(c for c in row["filename"] if c.isalnum() or c in "._-")[:100]
    return web.Response(body=content, content_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{filename or "document"}"'})


# --- authorizations ------------------------------------------------------------------------

authorization_page_size = 50
FILTER_TEXT_MAX = 40  # characters of a filter field read


def authorization_filter(query) -> tuple[card_transactions.AuthorizationFilter, dict[str, str]]:
    """The list's filters from the query string, and the message for each that is not valid."""
    errors: dict[str, str] = {}

    def text(name: str) -> str | None:
        return (query.get(name) or "").strip()[:FILTER_TEXT_MAX] or None

    def an_id(name: str) -> uuid.UUID | None:
        raw = text(name)
        try:
            return None if raw is None else uuid.UUID(raw)
        except ValueError:
            errors[name] = "an id (UUID)"
            return None

    def moment(name: str) -> datetime | None:
        raw = text(name)
        try:
            value = None if raw is None else datetime.fromisoformat(raw)
        except ValueError:
            errors[name] = "a date, e.g. 2026-11-28 or 2026-11-28T14:30"
            return None
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    decision = text("decision")
    if decision not in (None, "APPROVED", "DECLINED"):
        errors["decision"] = "APPROVED or DECLINED"
        decision = None
    found = card_transactions.AuthorizationFilter(
        card_id=an_id("cardId"), partner_id=an_id("partnerId"), decision=decision,
        code=text("code"), since=moment("since"), until=moment("until"))
    return found, errors


async def authorizations(request: web.Request) -> web.Response:
    """Readable by every role; a partner's staff see their partner's cards' only (the domain
    query's scope). No admin API route lists authorizations: this page is the panel's own."""
    where, errors = authorization_filter(request.query)
    before = _cursor(request.query.get("cursor")) or 2**62
    rows = []
    if not errors:
        async with services_of(request).pool.acquire() as conn:
            rows = await card_transactions.authorizations(
                conn, user_of(request).partner_id, where, before=before,
                limit=authorization_page_size)
    next_cursor = str(rows[-1]["seq"]) if len(rows) == authorization_page_size else None
    filters = {k: v for k, v in request.query.items() if k != "cursor"}
    return render(request, "authorizations.html", 422 if errors else 200, rows=rows,
                  errors=errors, query=request.query, next_cursor=next_cursor,
                  next_query=urlencode({**filters, "cursor": next_cursor or ""}), masked=_masked)


async def authorization(request: web.Request) -> web.Response:
    authorization_id = access.path_id(request)("authorizationId")
    services = services_of(request)
    async with services.pool.acquire() as conn:
        row = await card_transactions.authorization(conn, user_of(request).partner_id,
                                                    authorization_id)
    holds = [h for h in (row["deposit_hold_id"], row["user_hold_id"], row["fee_hold_id"]) if h]
    transfers = await services.ledger.transfers_and_resolutions(holds) if holds else []
    return render(request, "authorization.html", authorization=row,
                  events=json.loads(row["events"]) if isinstance(row["events"], str)
                  else row["events"], transfers=transfers, masked=_masked, code_name=code_name)


# --- the other card actions: activate, CVV reset, remove -------------------------------------


async def _card_action(request: web.Request, action: str, operation, *,
                       irreversible: bool = False) -> web.StreamResponse:
    """A confirmed card operation in one transaction with its audit line; the card page again
    with the message next to the action's form when it is refused."""
    form = await request.post()
    user, card_id = user_of(request), access.path_id(request)("cardId")
    if form.get("confirm") != "yes" or (irreversible and form.get("confirmFinal") != "yes"):
        return await card(request, {action: "tick the confirmation box" +
                                    ("es: this cannot be undone" if irreversible else "")}, 422)
    try:
        async with services_of(request).pool.acquire() as conn, conn.transaction():
            await operation(conn, user, card_id)
            await access.audit(conn, user, rule_of(request), f"card:{card_id}")
    except DomainError as exc:
        return await card(request, {action: exc.message}, error_status(exc))
    raise redirect(f"{security.PANEL_PREFIX}/cards/{card_id}")


def _actor(user: access.PanelUser) -> str:
    return f"admin:{user.admin_id}"  # as the admin API's card events name an administrator


@page("POST", "/admin/cards/{cardId}/activate", acts=True)
async def activate_card(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    return await _card_action(request, "activate", lambda conn, user, card_id: (
        card_repo.activate_card(services, conn, card_id, CardScope(user.partner_id),
                                hide_ordered=False, actor=_actor(user), pin=None)))


@page("POST", "/admin/cards/{cardId}/cvv", acts=True)
async def reset_cvv(request: web.Request) -> web.StreamResponse:
    """A new CVC2: the holder reads it in their app; the panel never shows it."""
    return await _card_action(request, "cvv", lambda conn, user, card_id: (
        card_repo.reset_visible_cvv(conn, card_id, CardScope(user.partner_id),
                                    hide_ordered=False, actor=_actor(user))))


@page("DELETE", "/admin/cards/{cardId}", acts=True)
async def remove_card(request: web.Request) -> web.StreamResponse:
    return await _card_action(request, "remove", lambda conn, user, card_id: (
        card_repo.transition(conn, card_id, CardScope(user.partner_id), hide_ordered=False,
                             rule=cardstate.remove, event="REMOVED", actor=_actor(user))),
                              irreversible=True)


# --- partner balance actions (Admin) -------------------------------------------------------


def _partner_balance_ids(request: web.Request) -> tuple[uuid.UUID, uuid.UUID]:
    ids = access.path_id(request)
    return ids("partnerId"), ids("balanceId")


def _checked_body(body_type, fields: dict) -> tuple[object | None, str | None]:
    """The admin API's body type filled from a form (its rules apply), or why it is refused."""
    try:
        return msgspec.convert(fields, type=body_type), None
    except msgspec.ValidationError as exc:
        return None, str(exc)


@page("POST", "/admin/partners/{partnerId}/balances/{balanceId}/reload", acts=True)
async def reload_partner_balance(request: web.Request) -> web.StreamResponse:
    """Book the partner's bank transfer (partner_balances.reload, once per bank reference), in a
    transaction that carries its audit line."""
    form = await request.post()
    partner_id, balance_id = _partner_balance_ids(request)
    amount = str(form.get("amount", "")).strip()
    body, problem = _checked_body(PartnerReload, {
        "amount": int(amount) if amount.isdigit() else amount,
        "bankReference": str(form.get("bankReference", "")).strip()})
    if problem is None and form.get("confirm") != "yes":
        problem = "tick the box to confirm the reload"
    if problem is not None:
        return await partner_statement(request, {"reload": problem}, 422)
    services, user, rule = services_of(request), user_of(request), rule_of(request)

    @contextlib.asynccontextmanager
    async def audited():
        async with services.pool.acquire() as conn, conn.transaction():
            yield conn
            await access.audit(conn, user, rule, f"partner-balance:{balance_id}")
    try:
        await partner_balance_repo.reload(services.pool, services.ledger, partner_id, balance_id,
                                          body.amount, body.bank_reference, transaction=audited)
    except DomainError as exc:
        return await partner_statement(request, {"reload": exc.message}, error_status(exc))
    raise redirect(f"{security.PANEL_PREFIX}/partners/{partner_id}/balances/{balance_id}"
                   "/statement")


@page("PUT", "/admin/partners/{partnerId}/balances/{balanceId}/threshold", acts=True)
async def set_partner_threshold(request: web.Request) -> web.StreamResponse:
    """Set (or, empty, clear) the low-balance alert threshold."""
    form = await request.post()
    partner_id, balance_id = _partner_balance_ids(request)
    raw = str(form.get("threshold", "")).strip()
    body, problem = _checked_body(ThresholdChange, {
        "lowBalanceThreshold": None if raw == "" else int(raw) if raw.isdigit() else raw})
    if problem is not None:
        return await partner_statement(request, {"threshold": problem}, 422)
    user = user_of(request)
    async with services_of(request).pool.acquire() as conn, conn.transaction():
        await partner_balance_repo.change_threshold(conn, partner_id, balance_id,
                                                    body.low_balance_threshold)
        await access.audit(conn, user, rule_of(request), f"partner-balance:{balance_id}")
    raise redirect(f"{security.PANEL_PREFIX}/partners/{partner_id}/balances/{balance_id}"
                   "/statement")


# --- administrators (Admin) and one's own password -------------------------------------------


@page("POST", "/admin/users", acts=True)
async def create_user(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    partner = str(form.get("partnerId", "")).strip()
    body, problem = _checked_body(NewAdmin, {
        "email": str(form.get("email", "")).strip(), "password": str(form.get("password", "")),
        "role": str(form.get("role", "")), "partnerId": partner or None})
    if problem is not None:
        return await users(request, {"create": problem}, 422)
    services, user = services_of(request), user_of(request)
    try:
        password_hash = await admins.hash_admin_password(body.password, services.background_cpu)
        async with services.pool.acquire() as conn, conn.transaction():
            row = await admins.add_admin_user(conn, body.email, password_hash, body.role,
                                              body.partner_id)
            await access.audit(conn, user, rule_of(request), f"admin:{row['id']}")
    except DomainError as exc:
        return await users(request, {"create": exc.message}, error_status(exc))
    raise redirect(f"{security.PANEL_PREFIX}/users")


@page("PATCH", "/admin/users/{adminId}", acts=True)
async def change_user(request: web.Request) -> web.StreamResponse:
    """Deactivate, reactivate, or change the role of another administrator."""
    form = await request.post()
    admin_id = access.path_id(request)("adminId")
    change = {"deactivate": {"active": False}, "activate": {"active": True}}.get(
        str(form.get("action", "")), {"role": str(form.get("role", ""))})
    body, problem = _checked_body(AdminChange, change)
    if problem is not None:
        return await users(request, {str(admin_id): problem}, 422)
    user = user_of(request)
    try:
        async with services_of(request).pool.acquire() as conn, conn.transaction():
            await admins.change_admin_user(conn, user.admin_id, admin_id, active=body.active,
                                           role=body.role)
            await access.audit(conn, user, rule_of(request), f"admin:{admin_id}")
    except DomainError as exc:
        return await users(request, {str(admin_id): exc.message}, error_status(exc))
    raise redirect(f"{security.PANEL_PREFIX}/users")


async def password_form(request: web.Request, errors: dict[str, str] | None = None,
                        status: int = 200) -> web.Response:
    return render(request, "password_change.html", status, errors=errors or {})


@page("PUT", "/admin/users/me/password")
async def change_password(request: web.Request) -> web.StreamResponse:
    """Change one's own password (the only page open after a reset until it is changed)."""
    form = await request.post()
    body, problem = _checked_body(PasswordChange, {
        "currentPassword": str(form.get("currentPassword", "")),
        "newPassword": str(form.get("newPassword", ""))})
    if problem is not None:
        return await password_form(request, {"newPassword": problem}, 422)
    services, user = services_of(request), user_of(request)
    try:
        await admins.change_own_password(services.pool, user.admin_id, body.current_password,
                                         body.new_password,
                                         background_cpu=services.background_cpu)
    except DomainError as exc:
        return await password_form(request, {"currentPassword": exc.message}, error_status(exc))
    async with services.pool.acquire() as conn, conn.transaction():
        await access.audit(conn, user, rule_of(request), f"admin:{user.admin_id}")
    raise redirect(f"{security.PANEL_PREFIX}/")


# --- partner certificates (mutual TLS; Admin, the platform's) --------------------------------

CSR_TEXT_MAX = 16_384  # characters of a pasted CSR read


@page("GET", "/admin/partners/{partnerId}/certificates")
async def certificates(request: web.Request, errors: dict[str, str] | None = None,
                       status: int = 200, issued=None) -> web.Response:
    partner_id = access.path_id(request)("partnerId")
    async with services_of(request).pool.acquire() as conn:
        partner_row = await partner_repo.find(conn, partner_id)
        rows = await partner_repo.certificates(conn, partner_id)
    return render(request, "certificates.html", status, partner=partner_row, rows=rows,
                  errors=errors or {}, issued=issued, ca_pem=services_of(request).ca.cert_pem)


@page("POST", "/admin/partners/{partnerId}/certificates", acts=True)
async def issue_certificate(request: web.Request) -> web.StreamResponse:
    """Sign a pasted CSR; the page then shows the certificate (public data) to hand over."""
    form = await request.post()
    csr = str(form.get("csr", ""))[:CSR_TEXT_MAX].strip()
    if not csr:
        return await certificates(request, {"csr": "paste the partner's CSR (PEM)"}, 422)
    if form.get("confirm") != "yes":
        return await certificates(request, {"csr": "tick the box to confirm the signature"}, 422)
    services, user = services_of(request), user_of(request)
    partner_id = access.path_id(request)("partnerId")
    try:
        async with services.pool.acquire() as conn, conn.transaction():
            issued = await partner_repo.issue_certificate(conn, services.ca, csr, partner_id,
                                                          background_cpu=services.background_cpu)
            await access.audit(conn, user, rule_of(request), f"certificate:{issued.serial}")
    except DomainError as exc:
        return await certificates(request, {"csr": exc.message}, error_status(exc))
    return await certificates(request, status=201, issued=issued)


@page("POST", "/admin/partners/{partnerId}/certificates/{serial}/revoke", acts=True)
async def revoke_certificate(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    partner_id = access.path_id(request)("partnerId")
    serial = request.match_info["serial"].lower()
    if form.get("confirm") != "yes":
        return await certificates(request, {serial: "tick the box to confirm the revocation"},
                                  422)
    services, user = services_of(request), user_of(request)
    if not SERIAL.fullmatch(serial):
        raise NotFound("no such certificate for this partner")
    async with services.pool.acquire() as conn, conn.transaction():
        await partner_repo.revoke_certificate(conn, partner_id, serial)
        await access.audit(conn, user, rule_of(request), f"certificate:{serial}")
    services.credentials.clear()  # committed: the certificate's next request is refused
    raise redirect(f"{security.PANEL_PREFIX}/partners/{partner_id}/certificates")


# --- webhook deliveries (read) ---------------------------------------------------------------

webhook_deliveries_page_size = 50


@page("GET", "/admin/partners/{partnerId}")
async def webhook_deliveries(request: web.Request) -> web.Response:
    """An endpoint's deliveries with their attempts, newest first. No admin API route reads them
    (partners read their own on /secure/webhooks): the page follows the partner's rules, and the
    endpoint is looked up under its partner."""
    ids, services = access.path_id(request), services_of(request)
    partner_id, endpoint_id = ids("partnerId"), ids("endpointId")
    endpoint = await webhooks.endpoint(services.pool, partner_id, endpoint_id)
    found = await webhooks.deliveries(
        services.pool, partner_id, endpoint_id,
        _page(request, webhooks.DELIVERY_PAGES, webhook_deliveries_page_size))
    return render(request, "webhook_deliveries.html", endpoint=endpoint, page=found,
                  partner_id=partner_id)


@page("PUT", "/admin/partners/{partnerId}/contact", acts=True)
async def set_partner_contact(request: web.Request) -> web.StreamResponse:
    """Where the partner's alerts go: its contact e-mail and alert webhook URL (empty removes)."""
    form = await request.post()
    partner_id = access.path_id(request)("partnerId")
    body, problem = _checked_body(PartnerContact, {
        "contactEmail": str(form.get("contactEmail", "")).strip() or None,
        "webhookUrl": str(form.get("webhookUrl", "")).strip() or None})
    if problem is not None:
        return await partner(request, {"contact": problem}, 422)
    user = user_of(request)
    async with services_of(request).pool.acquire() as conn, conn.transaction():
        await partner_repo.set_contact(conn, partner_id, body.contact_email, body.webhook_url)
        await access.audit(conn, user, rule_of(request), f"partner:{partner_id}")
    raise redirect(f"{security.PANEL_PREFIX}/partners/{partner_id}")
