-- Stream keys: long-lived, revocable publish credentials for OBS and other WHIP encoders.
-- The key itself is shown once; only its SHA-256 is stored.

CREATE TABLE stream_keys (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    room         TEXT NOT NULL,
    identity     TEXT NOT NULL,
    name         TEXT,
    created_by   TEXT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

CREATE INDEX stream_keys_by_creator ON stream_keys (created_by);
