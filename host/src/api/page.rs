//! Server-rendered HTML: the frame every page shares, the headers every page carries, and a page
//! that only says something. The client portal and the single sign-on refusals use it; an admin
//! console can too, as a [`Site`] of its own.
//!
//! Markup is written with maud's `html!`: templates are checked at compile time and every value
//! spliced in is escaped (element text and attribute values alike); only the constants of this
//! file go in unescaped. No script runs on a page (the Content-Security-Policy forbids it) except
//! the admin console's own script file ([`respond_with_policy`]), forms post to this host only,
//! and no page may be framed.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};

/// A set of pages under one name: the name heads every page and ends every `<title>`.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// E.g. "Client Area".
    pub name: &'static str,
}

impl Site {
    /// A whole page: `extra_head` goes into `<head>` (e.g. a CSRF meta tag), `body` below the
    /// `<h1>` of `title`.
    pub fn page(self, title: &str, extra_head: Markup, body: Markup) -> Markup {
        self.page_with_nav(title, extra_head, html! {}, body)
    }

    /// [`Site::page`] with `nav` in the header, after the site's name (the admin console's
    /// navigation and sign-out).
    pub fn page_with_nav(
        self,
        title: &str,
        extra_head: Markup,
        nav: Markup,
        body: Markup,
    ) -> Markup {
        html! {
            // maud's DOCTYPE is upper case; pages have always started with this one.
            (PreEscaped("<!doctype html>\n"))
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (self.name) }
                    (extra_head)
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header { strong { (self.name) } (nav) }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    }

    /// A page that only says something (a refusal, "not signed in", "signed out"), with a link
    /// onward as `(href, label)`.
    pub fn message(
        self,
        status: StatusCode,
        title: &str,
        text: &str,
        next: Option<(&str, &str)>,
    ) -> Response {
        let body = html! {
            p { (text) }
            @if let Some((href, label)) = next {
                p { a href=(href) { (label) } }
            }
        };
        respond(status, self.page(title, html! {}, body))
    }
}

/// The stylesheet of every page (inline: the Content-Security-Policy allows no other source).
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330}\
header{background:#1d3a5f;color:#fff;padding:.8rem 1.5rem}\
main{max-width:46rem;margin:1.5rem auto;padding:0 1rem}\
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #dde;padding:.4rem;text-align:left}\
.refused{color:#8a1c1c}.ok{color:#1c6b2b}code{background:#eef;padding:0 .2rem}\
form.inline{display:inline}";

/// The Content-Security-Policy of pages without scripts.
pub const NO_SCRIPT_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML response with the headers every page carries: not cached, not framed, no scripts, and
/// `Referrer-Policy: same-origin`: no other site learns a page's URL (a refusal page's may hold a
/// spent one-time token), while the pages' own form posts carry their true `Origin`, which the
/// same-origin check needs (under `no-referrer` browsers send `Origin: null` with them).
pub fn respond(status: StatusCode, page: Markup) -> Response {
    respond_with_policy(status, page, NO_SCRIPT_POLICY)
}

/// [`respond`] with another Content-Security-Policy (the admin console's allows this host's own
/// script and style files and requests to this host, nothing else).
pub fn respond_with_policy(status: StatusCode, page: Markup, policy: &'static str) -> Response {
    let mut response = (status, page.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(headers);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `Cache-Control: no-store`, `Pragma: no-cache` and `Referrer-Policy: no-referrer`: for every
/// answer that carries a secret or a signed-in user's data, HTML or not.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: Site = Site {
        name: "Client Area",
    };

    #[test]
    fn values_are_escaped() {
        let html = SITE
            .page(
                "<b>",
                html! {},
                html! { p title=("\"><script>") { ("<a href=\"x\">&</a>") } },
            )
            .into_string();
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(html.contains("<title>&lt;b&gt; · Client Area</title>"));
        assert!(html.contains("<h1>&lt;b&gt;</h1>"));
        assert!(html.contains("<p title=\"&quot;&gt;&lt;script&gt;\">"));
        assert!(html.contains("&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn pages_carry_their_headers() {
        let response = SITE.message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "No.",
            Some(("/portal/", "Back")),
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
    }
}
