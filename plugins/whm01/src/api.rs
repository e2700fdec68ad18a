//! Talking to WHM API 1 through the host: endpoints, the transport seam, and reading answers.

use serde_json::Value;

use crate::encode::FormBody;
use crate::model::{PluginError, Server};

/// The server's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Why no answer came back (the contract's `http.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No answer within the host's timeout.
    Timeout,
    /// The connection could not be made or was dropped.
    Connection(String),
    /// The answer exceeded the host's size cap (bytes).
    TooLarge(u64),
    /// The host refused the request as malformed.
    Invalid(String),
}

/// What the WHM logic needs from its surroundings: the host's `http` and `log` imports in the
/// component, a fake in tests.
pub trait Transport {
    /// POSTs an `application/x-www-form-urlencoded` body to `url`. Never adds `Authorization`:
    /// the host injects the server's own.
    fn post_form(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError>;

    /// Writes a debug line to the host's log. Never given tokens or secrets.
    fn debug(&mut self, message: &str);
}

/// `http(s)://<hostname>:<port>/json-api/<function>`.
#[must_use]
pub fn endpoint(server: &Server, function: &str) -> String {
    let scheme = if server.secure { "https" } else { "http" };
    let host = server.hostname.as_str();
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{}/json-api/{function}", server.port)
    } else {
        format!("{scheme}://{host}:{}/json-api/{function}", server.port)
    }
}

/// Checks that the server can be addressed at all.
pub fn validate_server(server: &Server) -> Result<(), PluginError> {
    if server.hostname.trim().is_empty() {
        return Err(PluginError::InvalidInput(
            "the server has no hostname".to_owned(),
        ));
    }
    if server.port == 0 {
        return Err(PluginError::InvalidInput(
            "the server's port is 0".to_owned(),
        ));
    }
    Ok(())
}

/// Whether a `metadata.result` value means success (`1`, `"1"` or `true`).
#[must_use]
pub fn result_ok(result: &Value) -> bool {
    match result {
        Value::Number(n) => n.as_u64() == Some(1) || n.as_f64() == Some(1.0),
        Value::String(s) => s.trim() == "1",
        Value::Bool(b) => *b,
        _ => false,
    }
}

/// The panel's own failure text in an answer: `metadata.reason`, or the legacy
/// `cpanelresult.error` / `cpanelresult.data.reason`.
#[must_use]
pub fn reason_of(answer: &Value) -> Option<&str> {
    [
        answer.pointer("/metadata/reason"),
        answer.pointer("/cpanelresult/error"),
        answer.pointer("/cpanelresult/data/reason"),
        answer.pointer("/error"),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| v.as_str().map(str::trim).filter(|s| !s.is_empty()))
}

/// The error text of one envelope: `None` when it succeeded.
#[must_use]
pub fn envelope_error(function: &str, envelope: &Value) -> Option<String> {
    match envelope.pointer("/metadata/result") {
        Some(result) if result_ok(result) => None,
        Some(_) => {
            Some(reason_of(envelope).map_or_else(|| format!("{function} failed"), str::to_owned))
        }
        None => Some(format!("malformed result from panel for {function}")),
    }
}

/// Something short and printable from a non-JSON body, for messages.
fn body_snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        return None;
    }
    let mut snippet: String = text.chars().take(200).collect();
    if snippet.len() < text.len() {
        snippet.push('…');
    }
    Some(snippet.replace(['\r', '\n'], " "))
}

/// Turns the host's answer into parsed JSON, or the error the whole call fails with.
pub fn read_answer(
    function: &str,
    answer: Result<HttpResponse, HttpError>,
) -> Result<Value, PluginError> {
    let response = match answer {
        Ok(r) => r,
        Err(HttpError::Timeout) => {
            return Err(PluginError::Transient(format!(
                "no answer from the panel to {function} in time"
            )));
        }
        Err(HttpError::Connection(m)) => {
            return Err(PluginError::Transient(format!(
                "connection to the panel failed ({function}): {m}"
            )));
        }
        Err(HttpError::TooLarge(cap)) => {
            return Err(PluginError::Panel(format!(
                "the panel's answer to {function} is larger than the {cap}-byte cap"
            )));
        }
        Err(HttpError::Invalid(m)) => {
            return Err(PluginError::InvalidInput(format!(
                "the host refused the request for {function}: {m}"
            )));
        }
    };
    let status = response.status;
    let json = serde_json::from_slice::<Value>(&response.body).ok();
    if !(200..300).contains(&status) {
        let reason = json
            .as_ref()
            .and_then(reason_of)
            .map(str::to_owned)
            .or_else(|| body_snippet(&response.body));
        let message = match reason {
            Some(reason) => format!("HTTP {status} from the panel ({function}): {reason}"),
            None => format!("HTTP {status} from the panel ({function})"),
        };
        return Err(if status >= 500 || status == 408 || status == 429 {
            PluginError::Transient(message)
        } else {
            PluginError::Panel(message)
        });
    }
    json.ok_or_else(|| PluginError::Panel(format!("the panel's answer to {function} is not JSON")))
}

/// A WHM API 1 client bound to one server.
#[derive(Debug)]
pub struct Whm<'a, T> {
    transport: &'a mut T,
    server: &'a Server,
}

impl<'a, T: Transport> Whm<'a, T> {
    /// A client for `server` that sends through `transport`.
    pub fn new(transport: &'a mut T, server: &'a Server) -> Self {
        Self { transport, server }
    }

    /// The server.
    #[must_use]
    pub fn server(&self) -> &Server {
        self.server
    }

    /// Writes a debug line to the host's log.
    pub fn debug(&mut self, message: &str) {
        self.transport.debug(message);
    }

    /// Calls one function; its `data` on success, a `panel` error when `metadata.result` is 0.
    pub fn call(&mut self, function: &str, params: &[(&str, &str)]) -> Result<Value, PluginError> {
        let mut body = FormBody::new();
        for (name, value) in params {
            body.field(name, value);
        }
        let url = endpoint(self.server, function);
        let mut answer = read_answer(function, self.transport.post_form(&url, body.into_bytes()))?;
        if let Some(message) = envelope_error(function, &answer) {
            return Err(PluginError::Panel(message));
        }
        Ok(answer
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// Sends one prepared `batch` body; the per-command answers (`data.result`), in order.
    pub fn batch(&mut self, body: Vec<u8>) -> Result<Vec<CommandAnswer>, PluginError> {
        let url = endpoint(self.server, "batch");
        let answer = self.transport.post_form(&url, body);
        // The common case, read without building the envelopes: a 2xx JSON answer with a
        // `data.result` list. Anything else goes the general way below.
        if let Ok(response) = &answer
            && (200..300).contains(&response.status)
            && let Ok(BatchAnswer {
                data: Some(BatchData {
                    result: Some(results),
                }),
            }) = serde_json::from_slice::<BatchAnswer<'_>>(&response.body)
        {
            return Ok(results.into_iter().map(CommandAnswer::read).collect());
        }
        let mut answer = read_answer("batch", answer)?;
        match answer.pointer_mut("/data/result").map(Value::take) {
            Some(Value::Array(results)) => {
                Ok(results.into_iter().map(CommandAnswer::Envelope).collect())
            }
            // No per-command results: the batch call itself failed (or the answer is malformed).
            _ => Err(PluginError::Panel(
                envelope_error("batch", &answer).unwrap_or_else(|| {
                    "the panel's answer to batch has no data.result list".to_owned()
                }),
            )),
        }
    }
}

/// A `batch` answer, as far as [`Whm::batch`] reads it at first.
#[derive(serde::Deserialize)]
struct BatchAnswer<'a> {
    #[serde(borrow)]
    data: Option<BatchData<'a>>,
}

#[derive(serde::Deserialize)]
struct BatchData<'a> {
    #[serde(borrow)]
    result: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// `metadata.result` of one command's envelope, the rest skipped.
#[derive(serde::Deserialize)]
struct EnvelopeStatus {
    metadata: Option<MetadataStatus>,
}

#[derive(serde::Deserialize)]
struct MetadataStatus {
    result: Option<Value>,
}

/// One command's answer in a `batch`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandAnswer {
    /// `metadata.result` says it succeeded (nothing else of the envelope was kept).
    Succeeded,
    /// Any other envelope, whole.
    Envelope(Value),
}

impl CommandAnswer {
    /// Reads one envelope of a batch: successes are recognised without building the envelope.
    fn read(raw: &serde_json::value::RawValue) -> Self {
        let succeeded = serde_json::from_str::<EnvelopeStatus>(raw.get())
            .ok()
            .and_then(|e| e.metadata?.result)
            .is_some_and(|result| result_ok(&result));
        if succeeded {
            Self::Succeeded
        } else {
            Self::Envelope(serde_json::from_str(raw.get()).unwrap_or(Value::Null))
        }
    }

    /// The error text of the command `function`: `None` when it succeeded (see
    /// [`envelope_error`]).
    #[must_use]
    pub fn error(&self, function: &str) -> Option<String> {
        match self {
            Self::Succeeded => None,
            Self::Envelope(envelope) => envelope_error(function, envelope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(secure: bool) -> Server {
        Server {
            hostname: "whm.example.test".into(),
            port: 2087,
            secure,
            username: "root".into(),
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(&server(true), "applist"),
            "https://whm.example.test:2087/json-api/applist"
        );
        let mut plain = server(false);
        plain.port = 2086;
        assert_eq!(
            endpoint(&plain, "batch"),
            "http://whm.example.test:2086/json-api/batch"
        );
        plain.hostname = "::1".into();
        assert_eq!(
            endpoint(&plain, "version"),
            "http://[::1]:2086/json-api/version"
        );
    }

    #[test]
    fn batch_answers_read_fast_say_what_the_envelopes_say() {
        let envelopes = [
            json!({"data": null, "metadata": {"command": "x", "result": 1, "reason": "OK"}}),
            json!({"metadata": {"result": "1"}}),
            json!({"metadata": {"result": true}}),
            json!({"metadata": {"result": 1.0}}),
            json!({"metadata": {"result": 0, "reason": "You do not have a user named “ann”."}}),
            json!({"metadata": {"result": "0"}}),
            json!({"metadata": {"reason": "no result field"}}),
            json!({"cpanelresult": {"error": "legacy failure"}}),
            json!({"metadata": {"result": 0}, "error": "top-level"}),
            json!("not an envelope"),
            json!(null),
        ];
        for envelope in envelopes {
            let raw: Box<serde_json::value::RawValue> =
                serde_json::from_str(&envelope.to_string()).unwrap();
            assert_eq!(
                CommandAnswer::read(&raw).error("create_integration_link"),
                envelope_error("create_integration_link", &envelope),
                "{envelope}"
            );
        }
    }

    #[test]
    fn results_and_reasons() {
        assert!(result_ok(&json!(1)));
        assert!(result_ok(&json!("1")));
        assert!(!result_ok(&json!(0)));
        assert!(!result_ok(&json!(null)));
        let failed =
            json!({"metadata": {"result": 0, "reason": "You do not have a user named “bob”."}});
        assert_eq!(
            envelope_error("create_integration_link", &failed).as_deref(),
            Some("You do not have a user named “bob”.")
        );
        assert_eq!(
            envelope_error("x", &json!({"metadata": {"result": 1, "reason": "OK"}})),
            None
        );
        assert_eq!(
            envelope_error("x", &json!({"metadata": {"result": 0}})).as_deref(),
            Some("x failed")
        );
        assert!(envelope_error("x", &json!("junk")).is_some());
        let legacy = json!({"cpanelresult": {"error": "Access denied", "data": {"result": "0"}}});
        assert_eq!(reason_of(&legacy), Some("Access denied"));
    }

    fn respond(status: u16, body: &str) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn answers_are_classified() {
        assert!(matches!(
            read_answer("f", Err(HttpError::Timeout)),
            Err(PluginError::Transient(_))
        ));
        assert!(matches!(
            read_answer("f", Err(HttpError::Connection("refused".into()))),
            Err(PluginError::Transient(m)) if m.contains("refused")
        ));
        assert!(matches!(
            read_answer("f", respond(503, "busy")),
            Err(PluginError::Transient(_))
        ));
        assert!(matches!(
            read_answer("f", respond(403, r#"{"metadata":{"result":0,"reason":"Token denied"}}"#)),
            Err(PluginError::Panel(m)) if m.contains("Token denied") && m.contains("403")
        ));
        assert!(matches!(
            read_answer("f", respond(401, "<html>nope</html>")),
            Err(PluginError::Panel(m)) if m == "HTTP 401 from the panel (f)"
        ));
        assert!(matches!(
            read_answer("f", respond(200, "<html>")),
            Err(PluginError::Panel(_))
        ));
        assert_eq!(
            read_answer("f", respond(200, r#"{"a":1}"#)),
            Ok(json!({"a": 1}))
        );
    }
}
