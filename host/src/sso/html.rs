//! Server-rendered HTML: the page frame, escaping, and the headers every page carries.
//!
//! Pages are plain strings built with `format!`; every value that came from a request or the
//! database goes through [`esc`]. No script runs on any page (the Content-Security-Policy
//! forbids it), forms post to this host only, and no page may be framed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escape text for HTML element content and double-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` is text (escaped here), `body` is HTML (escaped by the caller), `head`
/// extra HTML for `<head>` (e.g. the CSRF meta tag).
pub fn page(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Client Area</title>{head}<style>{STYLE}</style></head>\
         <body><header><strong>Client Area</strong></header><main>\n<h1>{title}</h1>\n{body}\n\
         </main></body></html>\n",
        title = esc(title),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330}\
header{background:#1d3a5f;color:#fff;padding:.8rem 1.5rem}\
main{max-width:46rem;margin:1.5rem auto;padding:0 1rem}\
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #dde;padding:.4rem;text-align:left}\
.refused{color:#8a1c1c}.ok{color:#1c6b2b}code{background:#eef;padding:0 .2rem}\
form.inline{display:inline}";

/// An HTML response with the headers every page carries: not cached, not framed, no scripts, no
/// referrer (a page's URL may hold a one-time token).
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(headers);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `Cache-Control: no-store` and `Referrer-Policy: no-referrer`.
pub fn no_store(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A page that only says something: a refusal, "not signed in", "signed out".
pub fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    next: Option<(&str, &str)>,
) -> Response {
    let link = next
        .map(|(href, label)| format!("<p><a href=\"{}\">{}</a></p>", esc(href), esc(label)))
        .unwrap_or_default();
    respond(
        status,
        page(title, "", &format!("<p>{}</p>{link}", esc(text))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = page("<b>", "", "");
        assert!(html.contains("<title>&lt;b&gt; · Client Area</title>"));
    }
}
