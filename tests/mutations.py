"""The curated mutations `make mutations` runs (tests/mutation_runner.py): each a small change to one
line of the product that must never ship unnoticed, with the tests that must fail when it is made.

Add one whenever a bug is fixed or a check matters for money or security (docs/testing.md):
the exact original text (found exactly once in the file), what it becomes, why it matters, and the
node ids of the fastest tests that catch it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # pytest node ids; at least one must fail
    why: str


DECLINES = "tests/integration/test_every_decline.py::test_every_decline_through_the_engine"
EXPIRY = "tests/integration/test_every_decline.py::test_a_card_is_valid_to_the_last_day_of_its_expiry_month"
FUNDS = "tests/integration/test_every_decline.py::test_exactly_the_funds_available_is_approved_one_more_declined"
PINS = "tests/integration/test_pin_concurrency.py"
AUTHORIZATIONS = "tests/integration/test_authorizations.py"
PANEL = "tests/integration/test_panel.py"

MUTATIONS: tuple[Mutation, ...] = (
    # --- the six breaks the suite once missed -----------------------------------------------------
    Mutation(
        "customer_card_scope_without_customer", "antaca_api/routes/cards.py",
        "return repo.CardScope(ctx.partner_id, ctx.customer.customer_id)",
        "return repo.CardScope(ctx.partner_id, None)",
        ("tests/integration/test_cards.py::test_another_customer_of_the_same_partner_cannot_see_a_card",),
        "one app user reads another user's full card data (same partner)"),
    Mutation(
        "card_query_without_customer_filter", "antaca_api/cards.py",
        " AND ($3::uuid IS NULL OR c.customer_id = $3)",
        " AND ($3::uuid IS NULL OR $3::uuid IS NOT NULL)",
        ("tests/integration/test_cards.py::test_another_customer_of_the_same_partner_cannot_see_a_card",),
        "the card lookup ignores its customer: every card of the partner is visible"),
    Mutation(
        "expired_card_check_removed", "antaca_auth/authorization.py",
        "    if expired(card.expiry, today):", "    if False:",
        (EXPIRY, DECLINES), "expired cards approved"),
    Mutation(
        "expiry_month_excluded", "antaca_auth/authorization.py",
        "return (today.year, today.month) > (year, month)",
        "return (today.year, today.month) >= (year, month)",
        (EXPIRY,), "a card declined during the last month it is valid"),
    Mutation(
        "pin_checked_cards_read_without_lock", "antaca_auth/engine.py",
        '    FOR UPDATE OF c"""', '    """',
        (PINS,), "concurrent wrong PINs each read the count before the others: more guesses"),
    Mutation(
        "locked_cards_fresh_read_ignored", "antaca_auth/engine.py",
        "snapshot = dataclasses.replace(snapshot, cards=fresh)", "pass",
        (PINS,), "a batch decides on counts a concurrent batch has changed"),
    Mutation(
        "correct_pin_keeps_the_wrong_count", "antaca_auth/authorization.py",
        "        failures = 0\n", "        pass\n",
        (PINS,), "a right PIN no longer resets the wrong ones: a holder is locked out early"),
    Mutation(
        "clearing_tolerance_one_percent_more", "antaca_auth/followups.py",
        "check_clearing(billing, holds[hold_ids.user].amount, self.clearing_tolerance_percent)",
        "check_clearing(billing, holds[hold_ids.user].amount, self.clearing_tolerance_percent + 1)",
        (f"{AUTHORIZATIONS}::test_a_clearing_at_exactly_the_tolerance_passes_and_one_above_is_refused",),
        "clearings captured above the tolerance"),
    Mutation(
        "clearing_tolerance_default_moved", "antaca_api/settings.py",
        "clearing_tolerance_percent: int = 20", "clearing_tolerance_percent: int = 21",
        (f"{AUTHORIZATIONS}::test_a_clearing_at_exactly_the_tolerance_passes_and_one_above_is_refused",),
        "the documented 20 % tolerance silently becomes 21 %"),
    Mutation(
        "clearing_limit_one_more", "antaca_auth/followups.py",
        "return held + held * tolerance_percent // PERCENT",
        "return held + held * tolerance_percent // PERCENT + 1",
        (f"{AUTHORIZATIONS}::test_a_clearing_at_exactly_the_tolerance_passes_and_one_above_is_refused",),
        "a clearing one minor unit above the limit is captured"),
    Mutation(
        "hold_resolved_in_its_batch_stays_listed", "antaca_auth/posting.py",
        "            if pid in self.expiries_added:", "            if False:",
        ("tests/integration/test_ledger.py::test_pending_and_post_in_one_batch",),
        "the sweeper's list names holds resolved in the batch that wrote them"),
    Mutation(
        "unlock_keeps_the_wrong_pin_count", "antaca_api/cards.py",
        "pin_failures = CASE WHEN $5 THEN 0 ELSE pin_failures END",
        "pin_failures = CASE WHEN $5 AND false THEN 0 ELSE pin_failures END",
        ("tests/integration/test_pin_concurrency.py::"
         "test_unlocking_a_card_locked_for_pin_tries_gives_three_tries_again",),
        "an unlocked card is locked again by its next wrong PIN (found by this suite)"),
    Mutation(
        "unlock_keeps_the_card_testing_count", "antaca_api/cards.py",
        "    card_testing_unlocked = unlocked and before.lock_reason in CARD_TESTING_LOCK_REASONS",
        "    card_testing_unlocked = False",
        ("tests/integration/test_pin_concurrency.py::"
         "test_unlocking_a_card_locked_for_card_testing_gives_its_tries_again",),
        "an unlocked card is locked again by its next wrong CVC2 (found by this suite)"),
    # --- card checks --------------------------------------------------------------------------------
    Mutation(
        "locked_card_check_removed", "antaca_auth/authorization.py",
        "    if card.state is CardState.LOCKED:", "    if False:",
        (DECLINES,), "locked cards answer the wrong code (lost and stolen cards not reported)"),
    Mutation(
        "removed_card_check_removed", "antaca_auth/authorization.py",
        "    if card.state is CardState.REMOVED:", "    if False:",
        (DECLINES,), "removed cards answer as not activated"),
    Mutation(
        "wrong_expiry_accepted", "antaca_auth/authorization.py",
        "    if not hmac.compare_digest(request.expiry, card.expiry):", "    if False:",
        (DECLINES,), "a guessed expiry is accepted: card testing gets easier"),
    Mutation(
        "cvc2_compared_on_two_digits", "antaca_auth/cardkeys.py",
        "return hmac.compare_digest(self.cvc2(pan, expiry, counter), candidate)",
        "return hmac.compare_digest(self.cvc2(pan, expiry, counter)[:2], candidate[:2])",
        (DECLINES,), "one CVC2 in ten accepted"),
    Mutation(
        "ecommerce_without_cvc2_accepted", "antaca_auth/authorization.py",
        "    elif request.type is TxType.ECOM and not card.ecommerce_without_cvc2:", "    elif False:",
        (DECLINES,), "e-commerce without CVC2 approved where the program refuses it"),
    Mutation(
        "atm_without_pin_accepted", "antaca_auth/authorization.py",
        "    if request.type is TxType.ATM and request.pin_block is None:", "    if False:",
        (DECLINES,), "cash withdrawn without a PIN"),
    Mutation(
        "blocked_balance_accepted", "antaca_auth/authorization.py",
        '    if card.balance_state != "ACTIVE":', "    if False:",
        (DECLINES,), "payments from a blocked or closed balance"),
    Mutation(
        "currency_check_removed", "antaca_auth/authorization.py",
        "    if request.currency != card.program_currency and (request.currency, card.program_currency)"
        " not in convertible:",
        "    if False:",
        (DECLINES, f"{AUTHORIZATIONS}::test_declines_with_their_codes"),
        "a payment in a currency without a rate is not declined"),
    Mutation(
        "pin_tries_four", "antaca_auth/authorization.py",
        "MAX_PIN_FAILURES = 3", "MAX_PIN_FAILURES = 4",
        (DECLINES,), "a fourth PIN guess"),
    Mutation(
        "card_testing_limit_one_later", "antaca_auth/decision.py",
        "if update.verification_failures >= policy.card_testing_failures_max:",
        "if update.verification_failures > policy.card_testing_failures_max:",
        (DECLINES,), "one more CVC2 guess before the card is locked"),
    # --- amounts and funds --------------------------------------------------------------------------
    Mutation(
        "amount_zero_accepted", "antaca_auth/authorization.py",
        "amount: Annotated[int, Meta(gt=0,", "amount: Annotated[int, Meta(ge=0,",
        (f"{AUTHORIZATIONS}::test_malformed_requests_leave_no_trace",), "authorizations of nothing"),
    Mutation(
        "insufficient_funds_off_by_one", "antaca_auth/decision.py",
        "    if user in available and available[user] < spent:",
        "    if user in available and available[user] <= spent:",
        (FUNDS,), "a payment of exactly the balance declined"),
    Mutation(
        "insufficient_deposit_off_by_one", "antaca_auth/decision.py",
        "        if available[deposit] < row.billing_amount:",
        "        if available[deposit] <= row.billing_amount:",
        (FUNDS,), "a payment of exactly the partner deposit declined"),
    Mutation(
        "ledger_lets_a_balance_go_one_below_zero", "antaca_auth/posting.py",
        "if dr.debits_must_not_exceed_credits and new_dp + new_dpe > d_cp:",
        "if dr.debits_must_not_exceed_credits and new_dp + new_dpe > d_cp + 1:",
        ("tests/integration/test_ledger.py::test_flagged_account_never_goes_negative",),
        "balances overdrawn by one minor unit"),
    Mutation(
        "hold_one_less_than_the_payment", "antaca_auth/decision.py",
        "currency, amount, reference = card.program_currency, row.billing_amount, "
        "request.message_id[:256]",
        "currency, amount, reference = card.program_currency, row.billing_amount - 1, "
        "request.message_id[:256]",
        (f"{AUTHORIZATIONS}::test_approval_holds_user_funds_and_the_deposit_once",),
        "the hold is smaller than the payment"),
    Mutation(
        "refund_debits_the_card", "antaca_auth/decision.py",
        "row.user_at = holds.add(TransferCodes.REFUND, settlement, card.user_account, amount, currency,",
        "row.user_at = holds.add(TransferCodes.REFUND, card.user_account, settlement, amount, currency,",
        (f"{AUTHORIZATIONS}::test_reversals_and_clearings",), "a refund takes money from the card"),
    Mutation(
        "fee_rounded_down", "antaca_auth/fees.py",
        "return (amount * basis_points + BASIS // 2) // BASIS",
        "return (amount * basis_points) // BASIS",
        ("tests/unit/test_fee_arithmetic.py",), "percentage fees rounded down, not half up"),
    Mutation(
        "conversion_rounded_half_even", "antaca_auth/fees.py",
        "return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))",
        'return int(exact.quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))',
        ("tests/integration/test_every_decline.py::test_a_converted_amount_is_rounded_half_up",),
        "converted amounts rounded against the rule"),
    Mutation(
        "partial_reversal_releases_everything", "antaca_auth/followups.py",
        "        released = requested", "        released = held",
        (f"{AUTHORIZATIONS}::test_reversals_and_clearings",),
        "a partial reversal releases the whole hold"),
    # --- idempotency ------------------------------------------------------------------------------
    Mutation(
        "stored_duplicate_treated_as_retransmission", "antaca_auth/decision.py",
        "    if digest is not None and digest != incoming.digest:", "    if False:",
        (f"{AUTHORIZATIONS}::test_a_message_id_reused_for_another_payment_is_answered_94",),
        "another payment under a used message id gets the first one's approval"),
    Mutation(
        "copy_in_flight_treated_as_retransmission", "antaca_auth/engine.py",
        "            if first.digest != item.digest:", "            if False:",
        ("tests/integration/test_every_decline.py::"
         "test_another_payment_under_a_message_id_in_flight_is_answered_94_at_once",),
        "another payment under a message id in flight gets the first one's approval"),
    # --- the sweeper ------------------------------------------------------------------------------
    Mutation(
        "sweeper_skips_holds_due_now", "antaca_auth/ledger.py",
        "WHERE expires_at <= :now ORDER BY expires_at, id LIMIT :limit",
        "WHERE expires_at < :now ORDER BY expires_at, id LIMIT :limit",
        ("tests/integration/test_ledger.py::test_expired_hold_is_released_by_the_sweeper_and_cannot_be_posted",),
        "holds stay held past their timeout"),
    Mutation(
        "expired_hold_can_be_posted", "antaca_auth/posting.py",
        "due = p.expires_at is not None and self.now >= p.expires_at",
        "due = p.expires_at is not None and self.now > p.expires_at",
        ("tests/integration/test_ledger.py::test_expired_hold_is_released_by_the_sweeper_and_cannot_be_posted",),
        "a hold is posted at the moment it expires"),
    # --- channels and tenancy ---------------------------------------------------------------------
    Mutation(
        "revoked_certificate_accepted", "antaca_api/channels.py",
        '    if row["revoked_at"] is not None:', "    if False:",
        ("tests/integration/test_channels.py::"
         "test_issued_certificate_opens_partner_routes_and_revocation_closes_them_at_once",),
        "a revoked partner certificate still opens /secure"),
    Mutation(
        "expired_session_accepted", "antaca_api/channels.py",
        '    if row["expires_at"] <= ctx.services.clock():', "    if False:",
        ("tests/integration/test_channels.py",), "an app or admin session works past its lifetime"),
    Mutation(
        "card_query_without_partner_filter", "antaca_api/cards.py",
        "AND ($2::uuid IS NULL OR c.partner_id = $2)", "AND ($2::uuid IS NULL OR $2::uuid IS NOT NULL)",
        ("tests/integration/test_cards.py::test_cards_need_verified_owner_and_own_balance",),
        "a partner reads another partner's cards"),
    Mutation(
        "balance_query_without_partner_filter", "antaca_api/balances.py",
        '" WHERE b.id = $1 AND b.partner_id = $2"', '" WHERE b.id = $1 AND $2::uuid IS NOT NULL"',
        ("tests/integration/test_balances.py::test_partners_cannot_touch_each_others_balances",),
        "a partner reads another partner's balance"),
    Mutation(
        "corporate_card_scope_reaches_customer_cards", "antaca_api/cards.py",
        "AND (NOT $4::boolean OR c.corporation_id IS NOT NULL)",
        "AND (NOT $4::boolean OR $4::boolean)",
        ("tests/integration/test_corporate_accounts.py::"
         "test_corporate_card_routes_reach_only_the_partners_corporate_cards",),
        "the partner's corporate card routes lock, remove or read a customer's card"),
    Mutation(
        "corporate_balance_query_reaches_customer_balances", "antaca_api/balances.py",
        "WHERE b.id = $1 AND b.partner_id = $2 AND b.corporation_id IS NOT NULL",
        "WHERE b.id = $1 AND b.partner_id = $2",
        ("tests/integration/test_corporate_accounts.py::"
         "test_corporate_balance_routes_reach_only_the_partners_corporate_balances",),
        "the corporate balance routes reload, block or close a customer's balance"),
    Mutation(
        "employee_of_another_corporation", "antaca_api/employees.py",
        "WHERE id = $1 AND corporation_id = $2", "WHERE id = $1 AND $2::uuid IS NOT NULL",
        ("tests/integration/test_corporate_accounts.py::test_employees_are_the_corporations_own",),
        "a corporate card names another corporation's employee as its holder"),
    Mutation(
        "encryption_not_required", "antaca_api/routing.py",
        "if route.encryption is Encryption.REQUIRED and not encrypt_response:",
        "if False:",
        ("tests/integration/test_cards.py::test_virtual_card_is_active_with_valid_data_and_masked_in_lists",),
        "full card data sent without JWE"),
    # --- the administration panel (docs/panel.md) -------------------------------------------
    Mutation(
        "panel_csrf_not_checked", "antaca_api/panel/__init__.py",
        "if not security.csrf_matches(user.csrf, form.get(security.CSRF_FIELD)):", "if False:",
        (f"{PANEL}::test_a_form_without_the_csrf_token_changes_nothing",),
        "another site's page makes a signed-in operator's browser lock cards"),
    Mutation(
        "panel_employee_acts", "antaca_api/panel/access.py",
        "return roles & ADMIN_MANAGER if rule.acts else roles", "return roles",
        (f"{PANEL}::test_an_employee_reads_but_cannot_act_nor_open_admin_pages",),
        "an Employee locks cards through the panel"),
    Mutation(
        "panel_staff_unscoped", "antaca_api/panel/access.py",
        "    if user.partner_id is not None:\n        await staff_scope.check_ids(",
        "    if False:\n        await staff_scope.check_ids(",
        (f"{PANEL}::test_partner_staff_see_their_partner_only",),
        "a partner's staff member opens another partner's customer by URL"),
    Mutation(
        "panel_no_idle_timeout", "antaca_api/admins.py",
        "AND s.last_seen_at > $2 - make_interval(secs => $3)", "AND $3::float8 > 0",
        (f"{PANEL}::test_idle_sessions_end_and_sign_out_revokes",),
        "an abandoned panel session stays usable until it expires"),
)
