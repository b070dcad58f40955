-- Authorization advices (0120): the network stood in for Antaca and approved. The issuer must
-- honour what the network approved, so the advice is booked as the network decided
-- (antaca_auth/decision.py `plan_advice`): its holds go on the card's own accounts where their
-- funds cover them, otherwise on the issuer's advice receivable of the currency, an account with
-- no funds limit that records what the cardholder (or the partner, for a deposit charge) owes.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
    'user_balance', 'corporate_balance', 'partner_deposit', 'partner_credit', 'fee_revenue',
    'network_settlement', 'external_funding', 'advice_receivable'));

-- network_advice: the row books a network's approved advice, not a decision of Antaca's.
-- advice_shortfall: what of it was held on the advice receivable (0: all on the card's accounts).
-- declined_before: the response code Antaca had given the same message (a decline, or its own
-- stand-in 91 when it could not answer in time) before the network's advice approved it.
-- Constant defaults: no table rewrite, and the engine's batch COPY names none of them.
ALTER TABLE authorizations
    ADD COLUMN network_advice boolean NOT NULL DEFAULT false,
    ADD COLUMN advice_shortfall bigint NOT NULL DEFAULT 0 CHECK (advice_shortfall >= 0),
    ADD COLUMN declined_before text;
