-- Keep in step with ../postgres/0013_sso_tokens_unlogged.sql, which makes sso_tokens an
-- unlogged table there. SQLite has no such thing: its WAL commits without a flush already
-- (synchronous = NORMAL), so there is nothing to change here.
SELECT 1;
