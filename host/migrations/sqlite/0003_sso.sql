-- Single sign-on and the client portal (SQLite). Keep in step with ../postgres/0003_sso.sql.
-- Timestamps are BIGINT milliseconds since the Unix epoch (UTC), written by the application.
-- No secret is stored in the clear: access tokens and portal sessions are kept as the hex SHA-256
-- of the random value handed out.

-- One-time access tokens issued by POST /oauth/token, redeemed once by GET /oauth/sso.
-- destination: the client-area path (service id filled in) the redemption lands on.
CREATE TABLE sso_tokens (
    token_hash   TEXT   NOT NULL PRIMARY KEY,
    service_id   BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    application  TEXT   NOT NULL,
    scope        TEXT   NOT NULL,
    destination  TEXT   NOT NULL,
    source       TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX sso_tokens_expires ON sso_tokens (expires_at);

-- Client portal sessions (cookie value hashed).
CREATE TABLE portal_sessions (
    token_hash  TEXT   NOT NULL PRIMARY KEY,
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES client_users (id) ON DELETE CASCADE,
    service_id  BIGINT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX portal_sessions_client ON portal_sessions (client_id);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);

-- What happened on a client account: sign-ins (and refused ones), security and user changes.
-- Never holds a secret.
CREATE TABLE client_activity (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    event       TEXT   NOT NULL,
    outcome     TEXT   NOT NULL CHECK (outcome IN ('success', 'refused')),
    user_id     BIGINT,
    service_id  BIGINT,
    actor       TEXT   NOT NULL,
    source      TEXT,
    detail      TEXT   NOT NULL
);
CREATE INDEX client_activity_client ON client_activity (client_id, id);
