-- One secondary index on authorizations instead of two (docs/benchmarks.md, "The floor").
--
-- Every authorization wrote four index entries: its id, its network message id (idempotency),
-- (balance_id, seq) for a customer's card transactions and (card_id, created_at) of approvals for
-- fee waiver rules. A card's balance never changes (0003_cards.sql), so the card index answers
-- both questions: a customer's transactions are found through the cards of their balances, and
-- the waiver rules' approved spend reads the card's payments of a period, filtering declines on
-- the heap. One index entry (and its WAL record) fewer per payment, on the hot transaction.
CREATE INDEX authorizations_card_time ON authorizations (card_id, created_at);
DROP INDEX authorizations_card;
DROP INDEX authorizations_balance;
