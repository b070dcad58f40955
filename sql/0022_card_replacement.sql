-- Card replacement and renewal, physical card delivery, PAN lengths of 14 to 19 digits
-- (docs/cards.md).

-- A PAN has 14 to 19 digits everywhere: programs, network messages (JSON and ISO 8583).
ALTER TABLE card_programs
    DROP CONSTRAINT card_programs_pan_length_check,
    ADD CONSTRAINT card_programs_pan_length_check CHECK (pan_length BETWEEN 14 AND 19);

-- A card made to replace another (lost, stolen, damaged, renewal before expiry; RENEWAL also for
-- the renewal job's new physical order): the card it replaces and why. Same holder and balance.
ALTER TABLE cards
    ADD COLUMN replaces_card_id   uuid REFERENCES cards (id),
    ADD COLUMN replacement_reason text
        CHECK (replacement_reason IN ('LOST', 'STOLEN', 'DAMAGED', 'RENEWAL')),
    ADD CONSTRAINT replacement_has_reason
        CHECK ((replaces_card_id IS NULL) = (replacement_reason IS NULL));

CREATE INDEX cards_replaces ON cards (replaces_card_id) WHERE replaces_card_id IS NOT NULL;
-- The renewal job's search: live cards by expiry.
CREATE INDEX cards_expiry ON cards (expiry) WHERE state = 'ACTIVE';

-- How a physical card travels to its holder; orders placed before this migration went by post.
ALTER TABLE card_orders
    ADD COLUMN delivery_method text NOT NULL DEFAULT 'POST'
        CHECK (delivery_method IN ('COURIER', 'POST'));
ALTER TABLE card_orders ALTER COLUMN delivery_method DROP DEFAULT;
