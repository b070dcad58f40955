"""Pure decisions of partner self-service and customer service (no database)."""

from __future__ import annotations

import pytest

from antaca_api.customers import ReviewDecision, manual_review, name_pattern
from antaca_api.domain_errors import KycAlreadyDecided, ValidationFailed
from antaca_api.kyc import KycStatus
from antaca_api.partner_balances import (
    LineCategory,
    line_category,
    normalized_emails,
    posted_change,
)
from antaca_api.staff_scope import scoped_parameters
from antaca_auth.codes import TransferCode


@pytest.mark.parametrize("current", [KycStatus.NOT_VERIFIED, KycStatus.PENDING, KycStatus.REJECTED])
def test_a_manual_approval_verifies_any_customer_not_yet_verified(current):
    assert manual_review(current, ReviewDecision.APPROVE, None) is KycStatus.VERIFIED


def test_a_rejection_needs_a_reason_and_a_decided_customer_stays_decided():
    with pytest.raises(ValidationFailed):
        manual_review(KycStatus.PENDING, ReviewDecision.REJECT, "   ")
    assert manual_review(KycStatus.PENDING, ReviewDecision.REJECT, "blurred") is KycStatus.REJECTED
    with pytest.raises(KycAlreadyDecided):
        manual_review(KycStatus.VERIFIED, ReviewDecision.REJECT, "too late")
    with pytest.raises(KycAlreadyDecided):
        manual_review(KycStatus.VERIFIED, ReviewDecision.APPROVE, None)
    with pytest.raises(KycAlreadyDecided):
        manual_review(KycStatus.REJECTED, ReviewDecision.REJECT, "again")


def test_name_search_takes_wildcards_literally():
    assert name_pattern(None) is None and name_pattern("  ") is None
    assert name_pattern(" Ada ") == "%Ada%"
    assert name_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"
    with pytest.raises(ValidationFailed):
        name_pattern("x" * 101)


@pytest.mark.parametrize(("code", "kind", "category"), [
    (TransferCode.PARTNER_RELOAD, "single", LineCategory.RELOAD),
    (TransferCode.CARD_PAYMENT_DEPOSIT, "pending", LineCategory.CHARGE),
    (TransferCode.CARD_PAYMENT_DEPOSIT, "post_pending", LineCategory.CHARGE),
    (TransferCode.CARD_PAYMENT_DEPOSIT, "void_pending", LineCategory.RELEASE),
    (TransferCode.CARD_PAYMENT_DEPOSIT, "expire_pending", LineCategory.RELEASE),
    (TransferCode.BALANCE_RELOAD, "single", LineCategory.CHARGE),
    (TransferCode.FEE_TRANSACTION, "single", LineCategory.FEE),
    (TransferCode.FEE_REFUND, "single", LineCategory.FEE),
    (999, "single", LineCategory.CHARGE),
])
def test_statement_categories(code, kind, category):
    assert line_category(code, kind) is category


def test_only_single_and_posting_transfers_move_the_posted_level():
    assert posted_change("credit", "single", 500) == 500
    assert posted_change("debit", "single", 500) == -500
    assert posted_change("debit", "post_pending", 300) == -300
    for kind in ("pending", "void_pending", "expire_pending"):
        assert posted_change("debit", kind, 300) == 0


def test_alert_emails_are_normalized_without_repeats():
    assert normalized_emails(None) is None
    assert normalized_emails([]) == []
    assert normalized_emails(["A@x.io", " a@x.io", "b@x.io"]) == ["a@x.io", "b@x.io"]


def test_staff_scope_classification():
    assert scoped_parameters("GET", "/admin/cards/{cardId}") == ["cardId"]
    assert scoped_parameters("GET", "/admin/partners/{partnerId}/balances/{balanceId}") == \
        ["partnerId"]  # a partner balance is looked up under its partner
    assert scoped_parameters("GET", "/admin/customers") == []
    assert scoped_parameters("GET", "/admin/summaries") is None
    assert scoped_parameters("PATCH", "/admin/networks/{networkId}") is None
    assert scoped_parameters("GET", "/admin/things/{thingId}") is None  # unknown: closed
    assert scoped_parameters("GET", "/admin/brand-new") is None
