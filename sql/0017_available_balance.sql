-- The available balance of a credit-normal account (a user's or corporation's balance, a partner
-- deposit, a fee revenue account): posted credits less posted debits less the debits held. One
-- definition for every query that needs it (the authorization engine's card read and its replayed
-- answers, low-balance alerts, fee collection); antaca_auth/accounts.py `available_balance` is the
-- same formula in Python. A plain SQL function: the planner inlines it, so it costs nothing.
CREATE FUNCTION credit_normal_available(credits_posted bigint, debits_posted bigint,
                                        debits_pending bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN credits_posted - debits_posted - debits_pending;
