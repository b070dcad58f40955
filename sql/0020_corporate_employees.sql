-- Corporate cards name their holder: an employee record of the corporation (name, e-mail,
-- optional phone). One record per e-mail within a corporation, whatever its letter case.
CREATE TABLE corporation_employees (
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id             uuid PRIMARY KEY,
    corporation_id uuid NOT NULL REFERENCES corporations (id),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The target of the cards' foreign key below: an employee is only ever its corporation's.
    UNIQUE (id, corporation_id)
);

CREATE UNIQUE INDEX corporation_employees_email
    ON corporation_employees (corporation_id, lower(email));
CREATE INDEX corporation_employees_corporation ON corporation_employees (corporation_id, seq);

-- A corporate card's holder, of the card's own corporation (the composite key); customer cards
-- have none. Every corporate card issued from now on names one (antaca_api/cards.py checks it at
-- issuing); cards issued before this migration named their holder by name only and keep
-- working, so the column stays nullable for them.
ALTER TABLE cards ADD COLUMN employee_id uuid;
ALTER TABLE cards ADD CONSTRAINT card_employee_of_its_corporation
    FOREIGN KEY (employee_id, corporation_id) REFERENCES corporation_employees (id, corporation_id);
ALTER TABLE cards ADD CONSTRAINT customer_card_has_no_employee
    CHECK (customer_id IS NULL OR employee_id IS NULL);

-- The corporation's cards, and its balances, page by issue order.
CREATE INDEX cards_corporation ON cards (corporation_id, seq) WHERE corporation_id IS NOT NULL;
CREATE INDEX balances_corporation_seq ON balances (corporation_id, seq)
    WHERE corporation_id IS NOT NULL;
