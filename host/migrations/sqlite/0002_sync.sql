-- The sync engine's durable state. Keep in step with the PostgreSQL's 0002_sync.sql.
-- Timestamps are BIGINT milliseconds since the Unix epoch (UTC), written by the application.

-- Per-service single sign-on credential carried by every link of the service. secret_sealed is
-- sealed by crypto::SecretBox; version bumps on rotation (links are re-pushed with the new one).
CREATE TABLE sso_credentials (
    service_id     BIGINT NOT NULL PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    subscriber_id  TEXT   NOT NULL UNIQUE,
    secret_sealed  TEXT   NOT NULL,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    rotated_at     BIGINT,
    revoked_at     BIGINT
);

-- One provisioning operation as admins see it.
CREATE TABLE syncs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    application   TEXT   NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('enable', 'configure', 'disable', 'service', 'repair')),
    state         TEXT   NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'completed_with_warnings', 'failed')),
    service_id    BIGINT,
    requested_by  BIGINT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT
);
CREATE INDEX syncs_application ON syncs (application, id);
CREATE INDEX syncs_state ON syncs (state);

-- One server's part of a sync: the unit of work that is leased, retried and reported.
CREATE TABLE sync_servers (
    sync_id     BIGINT NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
    server_id   BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'completed_with_warnings', 'failed')),
    done        BIGINT NOT NULL DEFAULT 0,
    total       BIGINT NOT NULL DEFAULT 0,
    warnings    BIGINT NOT NULL DEFAULT 0,
    attempts    BIGINT NOT NULL DEFAULT 0,
    not_before  BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    PRIMARY KEY (sync_id, server_id)
);
CREATE INDEX sync_servers_state ON sync_servers (state, server_id);

-- Who works on a server now. A host owns a server's queued work while its lease runs; an
-- expired lease is taken over by any host.
CREATE TABLE server_leases (
    server_id  BIGINT NOT NULL PRIMARY KEY,
    owner      TEXT   NOT NULL,
    until_ms   BIGINT NOT NULL
);

-- What each account has been given, as far as the panel confirmed it. The diff between this and
-- the desired state is all a sync pushes. No foreign keys: the record outlives moved services.
CREATE TABLE account_groups (
    service_id   BIGINT NOT NULL,
    application  TEXT   NOT NULL,
    server_id    BIGINT NOT NULL,
    username     TEXT   NOT NULL,
    PRIMARY KEY (service_id, application)
);
CREATE INDEX account_groups_server ON account_groups (server_id, application);

CREATE TABLE account_links (
    service_id          BIGINT NOT NULL,
    application         TEXT   NOT NULL,
    scope               TEXT   NOT NULL,
    server_id           BIGINT NOT NULL,
    username            TEXT   NOT NULL,
    label               TEXT   NOT NULL,
    position            BIGINT NOT NULL,
    credential_version  BIGINT NOT NULL,
    PRIMARY KEY (service_id, application, scope)
);
CREATE INDEX account_links_server ON account_links (server_id, application);
