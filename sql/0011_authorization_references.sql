-- The authorization engine writes a row here for every payment, a batch of hundreds per transaction.
-- Its three foreign keys were checked row by row: an index probe and a KEY SHARE lock on the card,
-- the balance and the network (the network's single row, share-locked by every concurrent batch,
-- became a multixact). That doubled the cost of the batch's insert (512 rows: 40 ms, 19 without).
-- The engine reads the card and its balance in the same transaction and takes the network from the
-- caller's certificate; no card, balance or network is ever deleted. `antaca ledger verify` checks
-- the references instead, as it checks the accounts that transfers name (transfers have no foreign
-- keys either, for the same reason).
ALTER TABLE authorizations
    DROP CONSTRAINT authorizations_network_id_fkey,
    DROP CONSTRAINT authorizations_card_id_fkey,
    DROP CONSTRAINT authorizations_balance_id_fkey;

-- `seq` orders a balance's history through authorizations_balance (balance_id, seq); nothing looks
-- an authorization up by `seq` alone, and the identity already makes it unique. Its own unique index
-- was one more index entry per payment.
ALTER TABLE authorizations DROP CONSTRAINT authorizations_seq_key;
