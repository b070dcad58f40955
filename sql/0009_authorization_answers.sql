-- The authorization rows of a batch are written before its ledger write (outside the hot partner
-- deposit's lock) and only the ones the ledger then declines are updated. The available amount
-- answered with an approval is therefore not stored: it is read from the balance-after columns of
-- the answer's last hold on the user's balance, named here (never changed afterwards, unlike
-- user_hold_id, which reversals and clearings move). Rows written before this keep available_after.
ALTER TABLE authorizations ADD COLUMN answer_hold_id uuid;
