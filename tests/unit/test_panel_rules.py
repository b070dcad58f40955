"""The administration panel's pure parts: CSRF tokens, cookie flags, the CSP, the dashboard's
figures, the SVG chart, the fee preview and the role rules (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from antaca_api.admins import Role
from antaca_api.panel import access, figures, security, views
from antaca_api.panel.charts import Bar, bar_chart
from antaca_auth import fees as pricing


def test_csrf_token_is_bound_to_its_session_and_compared_strictly():
    token = security.csrf_token("session-a")
    assert token == security.csrf_token("session-a") != security.csrf_token("session-b")
    assert len(token) == 64 and "session-a" not in token
    assert security.csrf_matches(token, token)
    for given in (None, "", token[:-1], token.upper() if token != token.upper() else "x"):
        assert not security.csrf_matches(token, given)
    assert not security.csrf_matches(None, None) and not security.csrf_matches("", "")


def test_cookies_are_http_only_strict_and_secure_over_tls():
    assert security.cookie_flags(False) == {"httponly": True, "samesite": "Strict",
                                            "path": "/panel/", "secure": False}
    assert security.cookie_flags(True)["secure"] is True
    assert security.new_sign_in_token() != security.new_sign_in_token()


def test_the_content_security_policy_allows_nothing_from_elsewhere_nor_inline():
    policy = security.CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["form-action"] == "'self'"
    assert "unsafe" not in policy and "http" not in policy and "*" not in policy


def test_outcomes_count_stand_in_apart_and_rank_decline_reasons():
    rows = [
        {"decision": "APPROVED", "stand_in": False, "reason": "APPROVED", "count": 7},
        {"decision": "DECLINED", "stand_in": False, "reason": "INSUFFICIENT_FUNDS", "count": 2},
        {"decision": "DECLINED", "stand_in": False, "reason": "CARD_LOCKED", "count": 3},
        {"decision": "DECLINED", "stand_in": True, "reason": "STAND_IN", "count": 1},
        {"decision": "APPROVED", "stand_in": True, "reason": "STAND_IN_APPROVED", "count": 1},
    ]
    found = figures.outcomes(rows)
    assert (found.approved, found.declined, found.stand_in, found.total) == (7, 5, 2, 14)
    assert found.decline_reasons == [("CARD_LOCKED", 3), ("INSUFFICIENT_FUNDS", 2),
                                     ("STAND_IN", 1)]
    assert found.approval_rate_percent == 50
    assert figures.outcomes([]).approval_rate_percent is None


def test_hourly_bars_cover_the_last_24_hours_with_zeros_between():
    now = datetime(2026, 11, 28, 18, 25, tzinfo=UTC)
    hour = datetime(2026, 11, 28, 16, tzinfo=UTC)
    bars = figures.hourly_bars([{"hour": hour, "count": 5, "approved": 4}], now)
    assert len(bars) == 24
    assert bars[-3] == Bar("", 5, 4) and sum(b.value for b in bars) == 5
    assert bars[0].label == "19:00"  # 23 hours before 18:00
    assert figures.start_of_day(now) == now - timedelta(hours=18, minutes=25)


def test_bar_chart_is_plain_svg_with_escaped_text_and_no_inline_style():
    svg = str(bar_chart([Bar("<a>", 10, 4), Bar("", 0)], "Title & more"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "&lt;a&gt;" in svg and "Title &amp; more" in svg and "<a>" not in svg
    assert "style=" not in svg and "<script" not in svg
    assert svg.count('class="bar-part"') == 2
    assert "NaN" not in str(bar_chart([], "empty"))


def test_fee_preview_prices_a_sample_payment_per_type():
    schedule = pricing.FeeSchedule(
        pos=pricing.TransactionFee(fixed=10, percent_bp=100, minimum=0, maximum=None))
    preview = views.fee_preview(schedule, 10_000)
    assert preview[0] == ("POS", 110, 10_110)
    assert preview[1] == ("ECOM", 0, 10_000) and preview[2] == ("ATM", 0, 10_000)


def test_a_typed_schedule_is_decoded_or_refused_with_its_reason():
    schedule, problem = views.decode_draft('{"pos": {"fixed": 5}}')
    assert problem is None and schedule.pos.fixed == 5
    assert views.decode_draft("{not json")[0] is None
    bad, problem = views.decode_draft('{"pos": {"fixed": 0, "minimum": 9, "maximum": 1}}')
    assert bad is None and "maximum is below the minimum" in problem


def test_an_action_is_never_an_employees_even_where_the_api_allows_it():
    lock = access.Rule("POST", "/admin/cards/{cardId}/lock", acts=True)
    assert Role.EMPLOYEE in access.api_route(lock.method, lock.path).roles  # the API's rule
    assert access.allowed_roles(lock) == {Role.ADMIN, Role.MANAGER}
    fees = access.Rule("POST", "/admin/programs/{programId}/fees", acts=True)
    assert access.allowed_roles(fees) == {Role.ADMIN}
    assert access.allowed_roles(access.Rule("GET", "/admin/audit-log")) == {Role.ADMIN}
    reader = access.PanelUser(None, "e@x", Role.EMPLOYEE, None, "t")
    assert access.may(reader, "GET", "/admin/customers")
    assert not access.may(reader, "POST", "/admin/cards/{cardId}/lock", acts=True)


def test_authorization_filters_are_read_or_refused_field_by_field():
    where, problems = views.authorization_filter({
        "cardId": "8d2f6a0e-3c52-4b8e-9b51-0f0c4a8c1d2e", "decision": "DECLINED", "code": " 51 ",
        "since": "2026-11-28", "until": "2026-11-29T10:30+01:00"})
    assert problems == {}
    assert str(where.card_id) == "8d2f6a0e-3c52-4b8e-9b51-0f0c4a8c1d2e" and where.code == "51"
    assert where.since == datetime(2026, 11, 28, tzinfo=UTC)
    assert where.until.utcoffset() == timedelta(hours=1)
    _, problems = views.authorization_filter({"cardId": "x", "decision": "MAYBE",
                                              "since": "yesterday"})
    assert set(problems) == {"cardId", "decision", "since"}


def test_expiry_is_read_as_mm_yy():
    assert views._yymm("07/29") == "2907"
    for wrong in ("13/29", "7/29", "07-29", "", "0729", "aa/bb"):
        assert views._yymm(wrong) is None, wrong
    assert views._mmyy("2907") == "07/29" and views._mmyy(None) == "-"


def test_partner_staff_are_not_offered_the_platforms_pages():
    staff = access.PanelUser(None, "s@x", Role.ADMIN, uuid.uuid4(), "t")
    assert access.may(staff, "GET", "/admin/customers")
    assert not access.may(staff, "GET", "/admin/audit-log")
    assert not access.may(staff, "POST", "/admin/partners/{partnerId}/balances/{balanceId}/reload",
                          acts=True)
