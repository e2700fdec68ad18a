//! The click, against a tiny scripted token endpoint.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use panel_sim::{ClickError, RedirectSource, SimConfig, SimHandle};

use super::{assert_ok, call, link_params, start_with};

const APP: &str = "PANELINK_clientarea_invoices";
const FALLBACK: &str = "https://billing.test/clientarea.php?action=invoices&ssoredirect=1";
const REDIRECT: &str = "https://billing.test/oauth/sso?access_token=0123abcd";

/// One token call as the endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    uri: String,
    form: Vec<(String, String)>,
}

impl Seen {
    fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Endpoint {
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn token(State(ep): State<Endpoint>, OriginalUri(uri): OriginalUri, body: Bytes) -> Response {
    let form = form_urlencoded::parse(&body).into_owned().collect();
    ep.seen.lock().unwrap().push(Seen {
        uri: uri.to_string(),
        form,
    });
    let (status, body) = ep
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((500, "script exhausted"));
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/html"
    };
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

/// Starts the endpoint with a script of answers; returns it and its token URL.
async fn endpoint(script: &[(u16, &'static str)]) -> (Endpoint, String) {
    let ep = Endpoint::default();
    ep.script.lock().unwrap().extend(script.iter().copied());
    let app = Router::new()
        .route("/oauth/token.php", post(token))
        .with_state(ep.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!(
        "http://{addr}/oauth/token.php?scope=clientarea%3Asso+clientarea%3Ainvoices&module_type=server&module=panelink"
    );
    (ep, url)
}

async fn sim_with_link(token_url: Option<&str>, url: Option<&str>) -> SimHandle {
    let sim = start_with(SimConfig::new().click_max_wait(Duration::from_millis(20))).await;
    let mut params = link_params(APP, url.unwrap_or(""));
    params.retain(|(k, _)| *k != "url" || url.is_some());
    if let Some(token_url) = token_url {
        params.push(("autologin_token_url", token_url));
    }
    assert_ok(&call(&sim, "create_integration_link", &params).await);
    sim
}

#[tokio::test]
async fn redirect_url_from_the_token_endpoint() {
    let (ep, token_url) = endpoint(&[(
        200,
        r#"{"access_token":"0123abcd","expires_in":3600,"token_type":"bearer","scope":"clientarea:sso clientarea:invoices","redirect_url":"https://billing.test/oauth/sso?access_token=0123abcd"}"#,
    )])
    .await;
    let sim = sim_with_link(Some(&token_url), Some(FALLBACK)).await;
    let outcome = sim.click("bob", APP).await.unwrap();
    assert_eq!(outcome.redirect_url, REDIRECT);
    assert_eq!(outcome.source, RedirectSource::TokenEndpoint);
    assert_eq!(outcome.attempts, 1);
    assert!(outcome.waits.is_empty());
    assert_eq!(outcome.token_error, None);
    assert_eq!(outcome.response["token_type"], "bearer");

    let seen = ep.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert!(
        call.uri
            .contains("scope=clientarea%3Asso+clientarea%3Ainvoices"),
        "{}",
        call.uri
    );
    assert_eq!(call.get("token"), Some("s3cr3t"));
    assert_eq!(
        call.get("subscriber_unique_id"),
        Some("PANELINK.0123456789abcdef")
    );
    assert_eq!(call.get("attempt"), Some("1"));
    assert_eq!(call.get("url"), Some(FALLBACK));
    assert_eq!(call.get("app"), Some(APP));
    assert_eq!(call.get("user"), Some("bob"));
    assert_eq!(call.get("implements"), Some("billing"));
    assert_eq!(call.get("label"), Some("View Invoice History"));
    assert_eq!(call.get("order"), Some("14"));
    assert_eq!(call.get("group_id"), Some("panelink"));
    assert_eq!(call.get("autologin_token_url"), None);
}

#[tokio::test]
async fn retry_then_success() {
    let (ep, token_url) = endpoint(&[
        (200, r#"{"retry":30,"attempt":1}"#),
        (
            200,
            r#"{"redirect_url":"https://billing.test/oauth/sso?access_token=0123abcd"}"#,
        ),
    ])
    .await;
    let sim = sim_with_link(Some(&token_url), Some(FALLBACK)).await;
    let outcome = sim.click("bob", APP).await.unwrap();
    assert_eq!(outcome.source, RedirectSource::TokenEndpoint);
    assert_eq!(outcome.redirect_url, REDIRECT);
    assert_eq!(outcome.attempts, 2);
    assert_eq!(
        outcome.waits,
        vec![Duration::from_millis(20)],
        "30 s capped by click_max_wait"
    );
    let seen = ep.seen.lock().unwrap().clone();
    assert_eq!(seen[1].get("attempt"), Some("2"));
}

#[tokio::test]
async fn failures_fall_back_to_url() {
    for (script, expect_in_error) in [
        (vec![(200, "<html>Bad Gateway</html>")], "unable to parse"),
        (vec![(500, r#"{"error":"server_error"}"#)], "500"),
        (vec![(400, r#"{"error":"invalid_client"}"#)], "400"),
        (vec![(200, r#"{"error":"nothing useful"}"#)], "neither"),
    ] {
        let (ep, token_url) = endpoint(&script).await;
        let sim = sim_with_link(Some(&token_url), Some(FALLBACK)).await;
        let outcome = sim.click("bob", APP).await.unwrap();
        assert_eq!(outcome.source, RedirectSource::FallbackUrl, "{script:?}");
        assert_eq!(outcome.redirect_url, FALLBACK);
        assert_eq!(outcome.attempts, 1);
        let error = outcome.token_error.unwrap();
        assert!(error.contains(expect_in_error), "{error}");
        assert_eq!(ep.seen.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn three_retries_then_fallback() {
    let (ep, token_url) = endpoint(&[(200, r#"{"retry":1}"#); 4]).await;
    let sim = sim_with_link(Some(&token_url), Some(FALLBACK)).await;
    let outcome = sim.click("bob", APP).await.unwrap();
    assert_eq!(outcome.source, RedirectSource::FallbackUrl);
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.waits.len(), 2);
    assert_eq!(ep.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn url_only_link_and_errors() {
    let sim = sim_with_link(None, Some(FALLBACK)).await;
    let outcome = sim.click("bob", APP).await.unwrap();
    assert_eq!(outcome.source, RedirectSource::DirectUrl);
    assert_eq!(outcome.redirect_url, FALLBACK);
    assert_eq!(outcome.attempts, 0);

    let error = sim.click("bob", "PANELINK_nothing").await.unwrap_err();
    assert!(matches!(error, ClickError::NoSuchLink { .. }));
    assert_eq!(
        error.to_string(),
        "The system did not find a valid integration configuration for the application “PANELINK_nothing” for the user “bob”."
    );

    let (_, token_url) = endpoint(&[(503, "down")]).await;
    let sim = sim_with_link(Some(&token_url), None).await;
    let error = sim.click("bob", APP).await.unwrap_err();
    assert!(matches!(error, ClickError::TokenFailed { .. }), "{error:?}");
}

#[tokio::test]
async fn unreachable_token_endpoint_falls_back() {
    // A port nothing listens on: bind, note the address, close.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let token_url = format!("http://{addr}/oauth/token.php");
    let sim = sim_with_link(Some(&token_url), Some(FALLBACK)).await;
    let outcome = sim.click("bob", APP).await.unwrap();
    assert_eq!(outcome.source, RedirectSource::FallbackUrl);
    assert!(outcome.token_error.unwrap().contains("unable to fetch"));
}
