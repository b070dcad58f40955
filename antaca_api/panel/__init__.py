"""The administration panel: server-rendered pages under /panel/ for operators, customer service
and partners' staff (docs/panel.md).

A sub-application of the service: its routes are not in the JSON route table (so not in the
OpenAPI document). Its middleware checks the session (cookie, idle timeout), the CSRF token of
every form, and the rules of the admin API route each page follows (access.py), renders domain
errors as pages, and adds the security headers to every answer.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from antaca_api import errors
from antaca_api.domain_errors import DomainError, Forbidden
from antaca_api.panel import access, security, views
from antaca_api.services import Services

HERE = Path(__file__).parent
# What an administrator whose password was reset may still do (as channels.PASSWORD_CHANGE_PATHS).
PASSWORD_CHANGE_PATHS = frozenset({f"{security.PANEL_PREFIX}/password",
                                   f"{security.PANEL_PREFIX}/sign-out"})


@web.middleware
async def panel_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        exc.headers.update(security.SECURITY_HEADERS)
        raise
    response.headers.update(security.SECURITY_HEADERS)
    return response


async def _guarded(request: web.Request, handler) -> web.StreamResponse:
    route_handler = request.match_info.handler
    if getattr(route_handler, "panel_public", False) or request.path.startswith(
            f"{security.PANEL_PREFIX}/static/"):
        return await handler(request)
    services = request.config_dict[views.SERVICES]
    user, must_change = await access.signed_in(services, request.cookies.get(
        security.SESSION_COOKIE))
    if user is None:
        response = web.HTTPSeeOther(f"{security.PANEL_PREFIX}/sign-in")
        response.del_cookie(security.SESSION_COOKIE, path=security.COOKIE_PATH)
        raise response
    request[views.USER] = user
    if must_change and request.path not in PASSWORD_CHANGE_PATHS:
        return await views.password_form(request, {"currentPassword": "your password was reset: "
                                                   "choose a new one first"}, 403)
    if request.method == "POST":
        form = await request.post()
        if not security.csrf_matches(user.csrf, form.get(security.CSRF_FIELD)):
            return views.forbidden_page(
                request, Forbidden("the form's security token is missing or wrong: reload the "
                                   "page and try again"), 403)
    try:
        rule = views.rule_of(request)
        if rule is not None:
            await access.check(services.pool, user, rule, request)
        return await handler(request)
    except DomainError as exc:
        return views.forbidden_page(request, exc, errors.status_of(exc))


def panel_app(services: Services) -> web.Application:
    """The panel, to be mounted under /panel/ (antaca_api/app.py)."""
    app = web.Application(middlewares=[panel_middleware])
    app[views.SERVICES] = services
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=jinja2.select_autoescape(default=True))
    get, post = app.router.add_get, app.router.add_post
    get("/sign-in", views.sign_in_form)
    post("/sign-in", views.sign_in)
    post("/sign-out", views.sign_out)
    get("/", views.dashboard)
    get("/customers", views.customers)
    get("/customers/{customerId}", views.customer)
    post("/customers/{customerId}/kyc", views.review_kyc)
    get("/cards", views.find_cards)
    get("/cards/{cardId}", views.card)
    post("/cards/{cardId}/lock", views.lock_card)
    post("/cards/{cardId}/unlock", views.unlock_card)
    post("/cards/{cardId}/activate", views.activate_card)
    post("/cards/{cardId}/cvv", views.reset_cvv)
    post("/cards/{cardId}/remove", views.remove_card)
    get("/programs", views.programs)
    get("/programs/{programId}/fees", views.fees)
    post("/programs/{programId}/fees", views.publish_fees)
    get("/authorizations", views.authorizations)
    get("/authorizations/{authorizationId}", views.authorization)
    get("/partners", views.partners)
    get("/partners/{partnerId}", views.partner)
    post("/partners/{partnerId}/contact", views.set_partner_contact)
    get("/partners/{partnerId}/certificates", views.certificates)
    get("/partners/{partnerId}/webhooks/{endpointId}", views.webhook_deliveries)
    post("/partners/{partnerId}/certificates", views.issue_certificate)
    post("/partners/{partnerId}/certificates/{serial}/revoke", views.revoke_certificate)
    get("/partners/{partnerId}/balances/{balanceId}/statement", views.partner_statement)
    post("/partners/{partnerId}/balances/{balanceId}/reload", views.reload_partner_balance)
    post("/partners/{partnerId}/balances/{balanceId}/threshold", views.set_partner_threshold)
    get("/corporations", views.corporations)
    get("/corporations/{dcCorporationId}", views.corporation)
    post("/corporations/{dcCorporationId}/kyb", views.decide_kyb)
    get("/corporations/{dcCorporationId}/documents/{documentId}", views.corporation_document)
    get("/audit-log", views.audit_log)
    get("/users", views.users)
    post("/users", views.create_user)
    post("/users/{adminId}", views.change_user)
    get("/password", views.password_form)
    post("/password", views.change_password)
    app.router.add_static("/static/", HERE / "static", name="static")
    return app
