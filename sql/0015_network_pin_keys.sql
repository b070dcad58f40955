-- Zone PIN keys: one per network, the key it enciphers PIN blocks under (ISO 9564-1 format 0
-- with a double-length TDES key, format 4 with an AES-128 key; antaca_auth/pinblock.py).
-- Stored only sealed: AES-256-GCM under a key derived from the card keyring's PIN key, the
-- network id as associated data (antaca_auth/cardkeys.py). The check value names the key
-- without revealing it. antaca_auth/zonekeys.py is the one module that reads and writes it.
CREATE TABLE network_pin_keys (
    network_id     uuid PRIMARY KEY REFERENCES networks (id),
    format         text NOT NULL CHECK (format IN ('ISO_0', 'ISO_4')),
    -- 12-byte nonce + 16-byte key + 16-byte tag: a clear key pasted here by hand cannot fit.
    key_ciphertext bytea NOT NULL CHECK (octet_length(key_ciphertext) = 44),
    check_value    text NOT NULL CHECK (check_value ~ '^[0-9A-F]{6}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
