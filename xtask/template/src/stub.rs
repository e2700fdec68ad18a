//! An in-memory Example Panel: the panel API this plugin talks to, answered the way the real
//! panel answers it, so that the plugin's logic is tested without a network.
//!
//! Replace it with a stub of *your* panel. Make it as strict as the real one: the same status
//! codes, the same error texts, the same limits. Panelink's own tests serve this same file over
//! real HTTP (`tests/src/example_panel.rs`), so what passes here also passes through the host.
//!
//! The Example Panel's API (JSON):
//!
//! - `GET /api/panelink/v1/info` → `{"product", "version", "features": ["links", …]}`
//! - `GET /api/panelink/v1/accounts` → `{"accounts": [{"user", "domain", "email", "suspended",
//!   "owner"}]}`
//! - `GET /api/panelink/v1/links?user=U` → `{"links": [{"id", "label", "url", "order", "group"}]}`,
//!   404 `{"error"}` for an unknown account
//! - `POST /api/panelink/v1/links/batch` with `{"operations": [op, …]}` (at most
//!   [`MAX_OPERATIONS`]), `op` is `{"op": "put", "user", "id", "label", "url", "order", "group",
//!   "icon"?, "sso"?: {"token_url", "subscriber_id", "secret"}}` or `{"op": "delete", "user",
//!   "id"}`; the answer has one `{"ok": true}` or `{"ok": false, "code", "error"}` per operation,
//!   in order, `code` being `not_found` (no such account or link) or `invalid`.
//!
//! Errors of a whole request are `{"error": "…"}` with 400 (malformed), 404 (unknown path), 405
//! (wrong method) or 413 (too many operations).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The most operations one batch request may carry.
pub const MAX_OPERATIONS: usize = 100;

/// One hosting account of the stub panel.
#[derive(Debug, Clone, Default)]
pub struct StubAccount {
    /// The account's main domain.
    pub domain: String,
    /// The account's contact e-mail address.
    pub email: String,
    /// Whether the account is suspended.
    pub suspended: bool,
    /// The reseller owning the account.
    pub owner: String,
    /// The links on the account, by id.
    pub links: BTreeMap<String, Value>,
}

/// The stub panel's whole state.
#[derive(Debug, Clone)]
pub struct StubPanel {
    /// The version `info` reports.
    pub version: String,
    /// The accounts, by user name.
    pub accounts: BTreeMap<String, StubAccount>,
    /// Every request received, as `METHOD path`.
    pub requests: Vec<String>,
}

impl Default for StubPanel {
    fn default() -> Self {
        Self {
            version: "2.4.0".to_owned(),
            accounts: BTreeMap::new(),
            requests: Vec::new(),
        }
    }
}

fn answer(status: u16, body: &Value) -> (u16, Vec<u8>) {
    (status, body.to_string().into_bytes())
}

fn error(status: u16, message: &str) -> (u16, Vec<u8>) {
    answer(status, &json!({ "error": message }))
}

fn text<'a>(op: &'a Value, field: &str) -> Result<&'a str, String> {
    op.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("operation lacks \"{field}\""))
}

impl StubPanel {
    /// A panel holding the given `(user, domain)` accounts, owned by `root`.
    #[must_use]
    pub fn with_accounts(accounts: &[(&str, &str)]) -> Self {
        let mut panel = Self::default();
        for (user, domain) in accounts {
            panel.accounts.insert(
                (*user).to_owned(),
                StubAccount {
                    domain: (*domain).to_owned(),
                    email: format!("{user}@{domain}"),
                    owner: "root".to_owned(),
                    ..StubAccount::default()
                },
            );
        }
        panel
    }

    /// The ids of the links on `user`'s account, in display order.
    #[must_use]
    pub fn link_ids(&self, user: &str) -> Vec<String> {
        let Some(account) = self.accounts.get(user) else {
            return Vec::new();
        };
        let mut links: Vec<(u64, &String)> = account
            .links
            .iter()
            .map(|(id, link)| (link["order"].as_u64().unwrap_or(0), id))
            .collect();
        links.sort();
        links.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Answers one request: `(status, body)`.
    pub fn handle(&mut self, method: &str, path_and_query: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        self.requests.push(format!("{method} {path}"));
        match (method, path) {
            ("GET", "/api/panelink/v1/info") => answer(
                200,
                &json!({ "product": "Example Panel", "version": self.version, "features": ["links"] }),
            ),
            ("GET", "/api/panelink/v1/accounts") => {
                let accounts: Vec<Value> = self
                    .accounts
                    .iter()
                    .map(|(user, a)| {
                        json!({ "user": user, "domain": a.domain, "email": a.email, "suspended": a.suspended, "owner": a.owner })
                    })
                    .collect();
                answer(200, &json!({ "accounts": accounts }))
            }
            ("GET", "/api/panelink/v1/links") => {
                let user = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("user="))
                    .unwrap_or("");
                match self.accounts.get(user) {
                    None => error(404, &format!("no such account: {user}")),
                    Some(account) => {
                        let links: Vec<Value> = self
                            .link_ids(user)
                            .iter()
                            .map(|id| {
                                let link = &account.links[id];
                                json!({ "id": id, "label": link["label"], "url": link["url"], "order": link["order"], "group": link["group"] })
                            })
                            .collect();
                        answer(200, &json!({ "links": links }))
                    }
                }
            }
            ("POST", "/api/panelink/v1/links/batch") => self.batch(body),
            (
                _,
                "/api/panelink/v1/info" | "/api/panelink/v1/accounts" | "/api/panelink/v1/links",
            )
            | (_, "/api/panelink/v1/links/batch") => error(405, "method not allowed"),
            _ => error(404, "no such endpoint"),
        }
    }

    fn batch(&mut self, body: &[u8]) -> (u16, Vec<u8>) {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return error(400, "the body is not JSON");
        };
        let Some(operations) = request.get("operations").and_then(Value::as_array) else {
            return error(400, "the body lacks \"operations\"");
        };
        if operations.len() > MAX_OPERATIONS {
            return error(
                413,
                &format!("at most {MAX_OPERATIONS} operations per request"),
            );
        }
        let results: Vec<Value> = operations
            .iter()
            .map(|op| match self.apply(op) {
                Ok(()) => json!({ "ok": true }),
                Err((code, e)) => json!({ "ok": false, "code": code, "error": e }),
            })
            .collect();
        answer(200, &json!({ "results": results }))
    }

    fn apply(&mut self, op: &Value) -> Result<(), (&'static str, String)> {
        let invalid = |e: String| ("invalid", e);
        let user = text(op, "user").map_err(invalid)?;
        let id = text(op, "id").map_err(invalid)?;
        let account = self
            .accounts
            .get_mut(user)
            .ok_or_else(|| ("not_found", format!("no such account: {user}")))?;
        match op.get("op").and_then(Value::as_str) {
            Some("put") => {
                text(op, "label").map_err(invalid)?;
                let url = text(op, "url").map_err(invalid)?;
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(invalid(format!("not an absolute URL: {url}")));
                }
                if op.get("order").and_then(Value::as_u64).is_none() {
                    return Err(invalid("operation lacks \"order\"".to_owned()));
                }
                account.links.insert(id.to_owned(), op.clone());
                Ok(())
            }
            Some("delete") => account
                .links
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| ("not_found", format!("no link {id} on {user}"))),
            _ => Err(invalid("\"op\" must be \"put\" or \"delete\"".to_owned())),
        }
    }
}
