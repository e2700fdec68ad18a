-- Signed, staged plugin installs and the failure policy (issue 12). Same in both dialects.
--
-- signature:  the upload's `ed25519=<base64>` as sent (NULL: unsigned, or from plugin_dir), over
--             the signed message of host/src/signing.rs; kept so activation can check it against
--             the keys trusted then.
-- signed_by:  the name of the trusted key that verified it at install (NULL: not verified).
-- failed_at / last_error: set when the failure policy flags the version (its calls kept
--             trapping or timing out); cleared when an admin activates it again.
--
-- A version's state is derived, not stored: failed (failed_at set), else active, else previous
-- (activated before: a rollback target), else staged (never activated).
ALTER TABLE plugin_versions ADD COLUMN signature TEXT;
ALTER TABLE plugin_versions ADD COLUMN signed_by TEXT;
ALTER TABLE plugin_versions ADD COLUMN failed_at BIGINT;
ALTER TABLE plugin_versions ADD COLUMN last_error TEXT;
