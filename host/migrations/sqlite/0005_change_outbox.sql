-- The change outbox: a write that needs pushing to the panels (saved links, a service changed,
-- a server changed, a credential rotated, a record forgotten by the drift check) stores the
-- change here in its own transaction. The sync engine drains each change into its syncs in one
-- transaction; a change left here by a crash is drained when the engine starts.
CREATE TABLE sync_changes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    -- Application ids, space-separated (ids hold no spaces).
    applications  TEXT    NOT NULL DEFAULT '',
    service_id    BIGINT,
    -- Server ids, space-separated.
    server_ids    TEXT    NOT NULL DEFAULT '',
    requested_by  BIGINT,
    created_at    BIGINT  NOT NULL
);

-- The hosts working on this database, each renewing its row while its sync engine runs: a host
-- takes at most its fair share (servers with work / live hosts) of the servers' leases.
CREATE TABLE sync_hosts (
    node_id  TEXT   NOT NULL PRIMARY KEY,
    seen_at  BIGINT NOT NULL
);

-- When a unit last made progress (or first failed): a unit fails only after transient failures
-- with no progress for the engine's retry window, however many attempts that takes.
ALTER TABLE sync_servers ADD COLUMN progress_at BIGINT;

-- The scopes a running unit pushes, each between single spaces (as account_records.scopes): a
-- panel may show a link before the batch that creates it is recorded, and its first click is
-- accepted while that push is under way.
ALTER TABLE sync_servers ADD COLUMN pushing TEXT NOT NULL DEFAULT '';

-- A warning about a service is written once per operation's log (see storage::apps::insert_log).
CREATE INDEX app_log_service ON app_log (application, service_id);
