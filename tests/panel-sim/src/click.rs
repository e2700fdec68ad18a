//! The click: what cPanel's server does when a user clicks an integration link
//! (`Integration::fetch_url`), reproduced against the link a simulated server stores.
//!
//! With an `autologin_token_url`, up to 3 attempts each POST the link's fields
//! (`application/x-www-form-urlencoded`: every stored field except `autologin_token_url` and
//! `token`, plus `app`, `user`, the current `token` — re-read before every attempt — and
//! `attempt=<n>`). A JSON object answer with `redirect_url` ends the click; one with `retry` (and no
//! `redirect_url`) waits `min(|retry|, 60 s, click_max_wait)` and tries again; anything else — a
//! transport error, a non-2xx status, a non-JSON body, a JSON answer with neither key, or 3 attempts
//! used up — is a failure, and the click falls back to the link's `url`. Without an
//! `autologin_token_url` the click goes straight to `url`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::state::Link;

/// Where a click's redirect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectSource {
    /// The token endpoint answered a `redirect_url`.
    TokenEndpoint,
    /// The token call failed and the click fell back to the link's `url`.
    FallbackUrl,
    /// The link has no `autologin_token_url`: its `url` is used directly.
    DirectUrl,
}

/// The result of a click.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickOutcome {
    /// Where the browser is sent.
    pub redirect_url: String,
    /// Where that URL came from.
    pub source: RedirectSource,
    /// Token calls made (0 without an `autologin_token_url`).
    pub attempts: u32,
    /// The waits made between attempts, after capping.
    pub waits: Vec<Duration>,
    /// Why the token call failed, in cPanel's wording, when the click fell back.
    pub token_error: Option<String>,
    /// The JSON objects the token endpoint answered, merged (later keys win).
    pub response: Map<String, Value>,
}

/// Why a click produced no redirect at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClickError {
    /// The user has no link with that app.
    #[error(
        "The system did not find a valid integration configuration for the application “{app}” for the user “{user}”."
    )]
    NoSuchLink {
        /// The user clicked for.
        user: String,
        /// The app clicked.
        app: String,
    },
    /// The link has neither `autologin_token_url` nor `url`.
    #[error(
        "The integration configuration file for “{app}” did not contain a “autologin_token_url” or “url” entry."
    )]
    NoDestination {
        /// The app clicked.
        app: String,
    },
    /// The token call failed and the link has no `url` to fall back to.
    #[error("{reason}")]
    TokenFailed {
        /// The app clicked.
        app: String,
        /// Why the token call failed.
        reason: String,
    },
}

/// The most cPanel waits between attempts.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// The most attempts cPanel makes.
pub const MAX_ATTEMPTS: u32 = 3;

/// Performs a click on `link` (owned by `user`). `current_token` re-reads the link's token before
/// each attempt (falling back to the stored one when it returns `None`).
pub(crate) async fn click(
    client: &reqwest::Client,
    user: &str,
    link: &Link,
    max_wait: Duration,
    current_token: impl Fn() -> Option<String>,
) -> Result<ClickOutcome, ClickError> {
    let app = link.app().to_owned();
    let url = link.non_empty("url").map(str::to_owned);
    let Some(token_url) = link.non_empty("autologin_token_url").map(str::to_owned) else {
        return match url {
            Some(url) => Ok(ClickOutcome {
                redirect_url: url,
                source: RedirectSource::DirectUrl,
                attempts: 0,
                waits: Vec::new(),
                token_error: None,
                response: Map::new(),
            }),
            None => Err(ClickError::NoDestination { app }),
        };
    };

    let mut merged = Map::new();
    let mut waits = Vec::new();
    let mut attempts = 0;
    let mut error: Option<String> = None;
    while attempts < MAX_ATTEMPTS {
        attempts += 1;
        let token = current_token()
            .or_else(|| link.token().map(str::to_owned))
            .unwrap_or_default();
        let mut form: Vec<(String, String)> = link
            .fields()
            .filter(|(k, _)| !matches!(*k, "autologin_token_url" | "token"))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        form.push(("app".to_owned(), app.clone()));
        form.push(("user".to_owned(), user.to_owned()));
        form.push(("token".to_owned(), token));
        form.push(("attempt".to_owned(), attempts.to_string()));

        let answer = match client.post(&token_url).form(&form).send().await {
            Ok(answer) => answer,
            Err(e) => {
                error = Some(fetch_error(&token_url, &e.to_string()));
                break;
            }
        };
        let status = answer.status();
        if !status.is_success() {
            let line = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            error = Some(fetch_error(&token_url, line.trim_end()));
            break;
        }
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(e) => {
                error = Some(fetch_error(&token_url, &e.to_string()));
                break;
            }
        };
        let object = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                error = Some(parse_error(
                    &token_url,
                    &format!("expected a JSON object, got {other}"),
                ));
                break;
            }
            Err(e) => {
                error = Some(parse_error(&token_url, &e.to_string()));
                break;
            }
        };
        let redirect = object
            .get("redirect_url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        let retry = object.get("retry").and_then(retry_seconds);
        merged.extend(object);
        if let Some(redirect_url) = redirect {
            return Ok(ClickOutcome {
                redirect_url,
                source: RedirectSource::TokenEndpoint,
                attempts,
                waits,
                token_error: None,
                response: merged,
            });
        }
        match retry {
            Some(seconds) if attempts < MAX_ATTEMPTS => {
                let wait = Duration::from_secs(seconds)
                    .min(MAX_RETRY_WAIT)
                    .min(max_wait);
                waits.push(wait);
                tokio::time::sleep(wait).await;
            }
            Some(_) => {
                error = Some(format!(
                    "The response from “{token_url}” still asked for a retry after {MAX_ATTEMPTS} attempts."
                ));
                break;
            }
            None => {
                error = Some(format!(
                    "The response from “{token_url}” contained neither “redirect_url” nor “retry”."
                ));
                break;
            }
        }
    }

    let reason = error.unwrap_or_else(|| format!("No redirect from “{token_url}”."));
    match url {
        Some(url) => Ok(ClickOutcome {
            redirect_url: url,
            source: RedirectSource::FallbackUrl,
            attempts,
            waits,
            token_error: Some(reason),
            response: merged,
        }),
        None => Err(ClickError::TokenFailed { app, reason }),
    }
}

fn fetch_error(url: &str, detail: &str) -> String {
    format!("The system was unable to fetch a response from “{url}” because of an error: {detail}")
}

fn parse_error(url: &str, detail: &str) -> String {
    format!(
        "The system was unable to parse the response from “{url}” because of an error: {detail}"
    )
}

/// `retry` as whole seconds: the absolute value of a number or numeric string, truncated.
fn retry_seconds(value: &Value) -> Option<u64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if n.is_finite() {
        // Truncation is the intent: cPanel takes the integer part.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(n.abs().trunc() as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_values() {
        assert_eq!(retry_seconds(&json!(5)), Some(5));
        assert_eq!(retry_seconds(&json!(-2.7)), Some(2));
        assert_eq!(retry_seconds(&json!("30")), Some(30));
        assert_eq!(retry_seconds(&json!(null)), None);
        assert_eq!(retry_seconds(&json!("soon")), None);
    }
}
