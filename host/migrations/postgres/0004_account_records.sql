-- The record of what each account has been given, one row per account instead of one per link.
-- Keep in step with the SQLite's 0004_account_records.sql, which explains the columns.
CREATE TABLE account_records (
    service_id   BIGINT  NOT NULL,
    application  TEXT    NOT NULL,
    server_id    BIGINT  NOT NULL,
    username     TEXT    NOT NULL,
    has_group    BOOLEAN NOT NULL,
    scopes       TEXT    NOT NULL,
    links        TEXT    NOT NULL,
    PRIMARY KEY (service_id, application, server_id)
);
CREATE INDEX account_records_server ON account_records (server_id, application);

INSERT INTO account_records (service_id, application, server_id, username, has_group, scopes, links)
SELECT k.service_id, k.application, k.server_id,
       COALESCE(
           (SELECT g.username FROM account_groups g WHERE g.service_id = k.service_id
              AND g.application = k.application AND g.server_id = k.server_id),
           (SELECT MIN(l.username) FROM account_links l WHERE l.service_id = k.service_id
              AND l.application = k.application AND l.server_id = k.server_id)),
       EXISTS (SELECT 1 FROM account_groups g WHERE g.service_id = k.service_id
                 AND g.application = k.application AND g.server_id = k.server_id),
       ' ' || COALESCE(
           (SELECT string_agg(l.scope, ' ') FROM account_links l WHERE l.service_id = k.service_id
              AND l.application = k.application AND l.server_id = k.server_id), '') || ' ',
       COALESCE(
           (SELECT json_agg(json_build_array(l.scope, l.label, l.position, l.credential_version))::text
              FROM account_links l WHERE l.service_id = k.service_id
              AND l.application = k.application AND l.server_id = k.server_id), '[]')
FROM (SELECT service_id, application, server_id FROM account_groups
      UNION SELECT service_id, application, server_id FROM account_links) k;

DROP TABLE account_links;
DROP TABLE account_groups;
