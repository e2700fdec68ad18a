//! `application/x-www-form-urlencoded` bodies for WHM API 1, including `batch` commands.
//!
//! Everything but RFC 3986's unreserved characters is percent-encoded (a space is `%20`, never
//! `+`), which every form or query-string decoder reads back the same way.

/// Whether a byte is one of RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = unreserved(i as u8);
        i += 1;
    }
    table
};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `s` percent-encoded to `out`.
pub fn push_encoded(out: &mut Vec<u8>, s: &[u8]) {
    // One pass, byte by byte: runs between escapes are short in these bodies, so a copy per run
    // costs more than it saves (and wasm copies go through a builtin call).
    out.reserve(s.len() * 3);
    for &b in s {
        if UNRESERVED[usize::from(b)] {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
        }
    }
}

/// Appends `s` percent-encoded twice (what encoding its encoded form gives), in one pass: an
/// escaped byte `%XX` becomes `%25XX`.
fn push_encoded_twice(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() * 5);
    for &b in s {
        if UNRESERVED[usize::from(b)] {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                b'2',
                b'5',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ]);
        }
    }
}

/// The percent-encoded form of `s`.
#[must_use]
pub fn encoded(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    push_encoded(&mut out, s.as_bytes());
    // Percent-encoded output is ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

/// A parameter of a `batch` command, for [`FormBody::command_parts`].
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// `name=value`, encoded as the command is written.
    Param(&'a str, &'a str),
    /// Parameters encoded beforehand by [`encoded_params`] (never the command's first).
    Encoded(&'a [u8]),
}

/// `params` as they are written inside a `batch` command after its first parameter (each with
/// its `&` separator, all encoded twice), for [`Part::Encoded`].
#[must_use]
pub fn encoded_params(params: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in params {
        out.extend_from_slice(b"%26");
        push_encoded_twice(&mut out, name.as_bytes());
        out.extend_from_slice(b"%3D");
        push_encoded_twice(&mut out, value.as_bytes());
    }
    out
}

/// Builds a WHM API 1 form body; it always starts with `api.version=1`.
#[derive(Debug, Clone)]
pub struct FormBody {
    body: Vec<u8>,
}

impl Default for FormBody {
    fn default() -> Self {
        Self::new()
    }
}

impl FormBody {
    /// A body holding only `api.version=1`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Like [`FormBody::new`], with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity.max(16));
        body.extend_from_slice(b"api.version=1");
        Self { body }
    }

    fn raw_field(&mut self, name: &str, value: &[u8]) {
        self.body.push(b'&');
        push_encoded(&mut self.body, name.as_bytes());
        self.body.push(b'=');
        push_encoded(&mut self.body, value);
    }

    /// Adds one `name=value` field.
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.raw_field(name, value.as_bytes());
        self
    }

    /// Adds one `batch` command: a `command` field whose value is `<function>?<query string>`,
    /// the query string encoded inside the value (and so encoded twice on the wire).
    pub fn command(&mut self, function: &str, params: &[(&str, &str)]) -> &mut Self {
        // The value `<function>?<name>=<value>&…` encoded as a whole: the function (taken as it
        // is) once, the separators `?`, `=`, `&` once (`%3F`, `%3D`, `%26`), names and values,
        // already encoded inside the query string, twice. Written in one pass.
        self.body.extend_from_slice(b"&command=");
        push_encoded(&mut self.body, function.as_bytes());
        for (i, (name, value)) in params.iter().enumerate() {
            self.body
                .extend_from_slice(if i == 0 { b"%3F" } else { b"%26" });
            push_encoded_twice(&mut self.body, name.as_bytes());
            self.body.extend_from_slice(b"%3D");
            push_encoded_twice(&mut self.body, value.as_bytes());
        }
        self
    }

    /// Like [`FormBody::command`], with some parameters already encoded by
    /// [`encoded_params`]: a call's link templates are the same for every account, so their
    /// parameters (an icon is a kilobyte of base64) are encoded once per call, not per command.
    /// The first part must be a [`Part::Param`]. The body is byte for byte what `command` gives.
    pub fn command_parts(&mut self, function: &str, parts: &[Part<'_>]) -> &mut Self {
        self.body.extend_from_slice(b"&command=");
        push_encoded(&mut self.body, function.as_bytes());
        let mut first = true;
        for part in parts {
            match part {
                Part::Param(name, value) => {
                    self.body
                        .extend_from_slice(if first { b"%3F" } else { b"%26" });
                    push_encoded_twice(&mut self.body, name.as_bytes());
                    self.body.extend_from_slice(b"%3D");
                    push_encoded_twice(&mut self.body, value.as_bytes());
                }
                Part::Encoded(bytes) => self.body.extend_from_slice(bytes),
            }
            first = false;
        }
        self
    }

    /// The body's bytes so far.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body's bytes.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: impl AsRef<[u8]>) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_ref()).into_owned().collect()
    }

    #[test]
    fn unreserved_characters_stay_and_the_rest_is_escaped() {
        assert_eq!(encoded("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encoded("a b&c=d?e+f/g:h"), "a%20b%26c%3Dd%3Fe%2Bf%2Fg%3Ah");
        assert_eq!(encoded("Billing & Support"), "Billing%20%26%20Support");
        assert_eq!(encoded("“x”"), "%E2%80%9Cx%E2%80%9D");
        assert_eq!(encoded(""), "");
    }

    #[test]
    fn plain_body_round_trips() {
        let mut body = FormBody::new();
        body.field("user", "bob smith").field("x", "a&b=c");
        assert_eq!(
            body.as_bytes(),
            b"api.version=1&user=bob%20smith&x=a%26b%3Dc"
        );
        assert_eq!(
            decode(body.as_bytes()),
            [("api.version", "1"), ("user", "bob smith"), ("x", "a&b=c")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn one_pass_command_is_the_query_string_encoded_again() {
        let values = [
            "",
            "plain",
            "a b&c=d?e+f/g:h%",
            "“x” 100%",
            "\u{0}\u{7f}\u{ff}~._-",
        ];
        for function in ["create_integration_link", "odd name?"] {
            for value in values {
                let params = [("user", value), ("k y", "v"), (value, value)];
                let mut inner = function.to_owned();
                for (i, (k, v)) in params.iter().enumerate() {
                    inner.push(if i == 0 { '?' } else { '&' });
                    inner.push_str(&encoded(k));
                    inner.push('=');
                    inner.push_str(&encoded(v));
                }
                let mut body = FormBody::new();
                body.command(function, &params);
                let want = format!("api.version=1&command={}", encoded(&inner));
                assert_eq!(std::str::from_utf8(body.as_bytes()).unwrap(), want);
            }
        }
    }

    #[test]
    fn commands_with_parameters_encoded_beforehand_are_the_same_bytes() {
        let params = [
            ("user", "bob smith"),
            ("app", "PANELINK_clientarea_upgrade"),
            ("label", "Upgrade & Downgrade"),
            ("token", "a+b/c="),
            ("url", "https://billing.example/x?a=1&b=2"),
        ];
        let mut whole = FormBody::new();
        whole.command("create_integration_link", &params);
        let middle = encoded_params(&params[1..3]);
        let end = encoded_params(&params[4..]);
        let mut parts = FormBody::new();
        parts.command_parts(
            "create_integration_link",
            &[
                Part::Param(params[0].0, params[0].1),
                Part::Encoded(&middle),
                Part::Param(params[3].0, params[3].1),
                Part::Encoded(&end),
            ],
        );
        assert_eq!(whole.as_bytes(), parts.as_bytes());
    }

    #[test]
    fn batch_commands_are_encoded_twice_and_decode_back() {
        let mut body = FormBody::new();
        body.command(
            "create_integration_group",
            &[("user", "bob"), ("label", "Billing & Support")],
        )
        .command("version", &[])
        .command("x", &[("v", "100%+?")]);
        let wire = std::str::from_utf8(body.as_bytes()).unwrap();
        assert!(wire.starts_with("api.version=1&command=create_integration_group%3Fuser%3Dbob%26label%3DBilling%2520%2526%2520Support&"));
        assert!(!wire.contains("abort_on_error"));

        let fields = decode(wire);
        assert_eq!(fields[0], ("api.version".to_owned(), "1".to_owned()));
        let commands: Vec<&str> = fields[1..]
            .iter()
            .map(|(k, v)| {
                assert_eq!(k, "command");
                v.as_str()
            })
            .collect();
        assert_eq!(commands[1], "version");
        let (function, query) = commands[0].split_once('?').unwrap();
        assert_eq!(function, "create_integration_group");
        assert_eq!(
            decode(query),
            [("user", "bob"), ("label", "Billing & Support")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let (_, query) = commands[2].split_once('?').unwrap();
        assert_eq!(decode(query), [("v".to_owned(), "100%+?".to_owned())]);
    }
}
