//! Plugin signatures: ed25519 over one canonical message that names a component.
//!
//! A vendor signs what an operator is asked to trust: the component's exact bytes (through their
//! digest) together with the application it claims to serve and its version. The host checks an
//! upload's signature against the `trusted_keys` of its configuration before anything is stored
//! ([`crate::catalog`]), and again when a version is activated.
//!
//! # The signed message
//!
//! UTF-8 text of exactly four lines, each ended by a line feed (`\n`, no carriage return):
//!
//! ```text
//! panelink-plugin-signature-v1
//! application=<application id, as the component describes itself>
//! version=<version, as the component describes itself>
//! digest=sha256:<64 lower-case hex digits: SHA-256 of the component's bytes>
//! ```
//!
//! The first line fixes the purpose and the format's version, so a signature made for anything
//! else never verifies here. Application ids are `[a-z0-9_-]` and versions hold no control
//! characters (the catalog refuses others), so no two components share a message.
//!
//! # Encodings
//!
//! - A signature (the `X-Panelink-Signature` header, a signature file):
//!   `ed25519=<base64 of the 64-byte signature>`.
//! - A public key (`trusted_keys`): `ed25519:<base64 of the 32-byte key>`.
//! - A private key file: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as `panelink plugin keygen`
//!   and `openssl genpkey -algorithm ed25519` write it.
//!
//! Base64 is the standard alphabet with padding. Verification is strict (RFC 8032 with the
//! checks of `verify_strict`: no small-order keys, no malleable signatures).

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// The first line of every signed message.
pub const MESSAGE_HEADER: &str = "panelink-plugin-signature-v1";

/// The prefix of a signature's text form.
pub const SIGNATURE_PREFIX: &str = "ed25519=";

/// The prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// Why a key or a signature could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not a signature of ours.
    #[error("the signature is not ed25519=<base64 of 64 bytes>: {0}")]
    BadSignature(String),
    /// The text is not a public key of ours.
    #[error("the public key is not ed25519:<base64 of 32 bytes>: {0}")]
    BadPublicKey(String),
    /// The private key file is unusable.
    #[error("the private key is not an ed25519 PKCS#8 PEM key: {0}")]
    BadPrivateKey(String),
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The message a signature covers (see the module docs).
pub fn message(application: &str, version: &str, digest: &str) -> String {
    format!("{MESSAGE_HEADER}\napplication={application}\nversion={version}\ndigest={digest}\n")
}

/// An ed25519 signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl Signature {
    /// Read `ed25519=<base64>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let encoded = text.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            Error::BadSignature(format!("it does not start with {SIGNATURE_PREFIX:?}"))
        })?;
        let bytes = B64
            .decode(encoded)
            .map_err(|e| Error::BadSignature(format!("invalid base64 ({e})")))?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| Error::BadSignature(format!("{} bytes, not 64", b.len())))?;
        Ok(Self(ed25519_dalek::Signature::from_bytes(&bytes)))
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SIGNATURE_PREFIX}{}", B64.encode(self.0.to_bytes()))
    }
}

/// An ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl PublicKey {
    /// Read `ed25519:<base64>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let encoded = text.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(|| {
            Error::BadPublicKey(format!("it does not start with {PUBLIC_KEY_PREFIX:?}"))
        })?;
        let bytes = B64
            .decode(encoded)
            .map_err(|e| Error::BadPublicKey(format!("invalid base64 ({e})")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| Error::BadPublicKey(format!("{} bytes, not 32", b.len())))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| Error::BadPublicKey("not a point of the curve".into()))?;
        if key.is_weak() {
            return Err(Error::BadPublicKey("a weak (small-order) key".into()));
        }
        Ok(Self(key))
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify_strict(message, &signature.0).is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

/// A public key the operator trusts, under the name the API reports as `signed_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The vendor's name for the key (1–64 characters of `A-Za-z0-9._-`).
    pub name: String,
    /// The key.
    pub key: PublicKey,
}

impl TrustedKey {
    /// A named key; the name is checked.
    pub fn new(name: &str, key: PublicKey) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "key name {name:?} must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }
}

/// The configured trusted keys. Empty: signatures are optional (and kept unverified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<TrustedKey>);

impl TrustedKeys {
    /// These keys (names must be unique: a duplicate is refused).
    pub fn new(keys: Vec<TrustedKey>) -> Result<Self, String> {
        let mut names = std::collections::BTreeSet::new();
        for key in &keys {
            if !names.insert(key.name.as_str()) {
                return Err(format!("key name {:?} is given twice", key.name));
            }
        }
        Ok(Self(keys))
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.0
    }

    /// The names, comma separated (for messages).
    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The trusted key that made `signature` over `message`, if any.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Option<&TrustedKey> {
        self.0.iter().find(|k| k.key.verifies(message, signature))
    }
}

/// A vendor's private key.
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public())
    }
}

impl PrivateKey {
    /// A new random key (the operating system's random generator).
    pub fn generate() -> Self {
        let mut seed: [u8; 32] = rand::random();
        let key = SigningKey::from_bytes(&seed);
        seed.iter_mut().for_each(|b| *b = 0);
        Self(key)
    }

    /// Read a PKCS#8 PEM key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| Error::BadPrivateKey(e.to_string()))
    }

    /// Read a key file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&pem)
    }

    /// Write the key as PKCS#8 PEM to a new file that only its owner may read (mode 0600 on
    /// Unix). An existing file is never overwritten.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let pem = self.to_pem()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The key as PKCS#8 v1 PEM (the seed alone, without the public key: the form OpenSSL
    /// writes and reads).
    pub fn to_pem(
        &self,
    ) -> Result<ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing<String>, Error> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| Error::BadPrivateKey(e.to_string()))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Sign a message.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn the_message_is_four_lines() {
        assert_eq!(
            message("cpanel", "1.2.3", DIGEST),
            format!(
                "panelink-plugin-signature-v1\napplication=cpanel\nversion=1.2.3\ndigest={DIGEST}\n"
            )
        );
    }

    #[test]
    fn sign_verify_and_text_forms_round_trip() {
        let key = PrivateKey::generate();
        let m = message("cpanel", "1.0.0", DIGEST);
        let signature = key.sign(m.as_bytes());
        let text = signature.to_string();
        assert!(text.starts_with("ed25519="));
        assert_eq!(Signature::parse(&format!(" {text}\n")).unwrap(), signature);
        let public = PublicKey::parse(&key.public().to_string()).unwrap();
        let trusted = TrustedKeys::new(vec![
            TrustedKey::new("other", PrivateKey::generate().public()).unwrap(),
            TrustedKey::new("acme", public).unwrap(),
        ])
        .unwrap();
        assert_eq!(
            trusted
                .verify(m.as_bytes(), &signature)
                .map(|k| k.name.as_str()),
            Some("acme")
        );
        // Another version, application or digest: not this signature.
        for other in [
            message("cpanel", "1.0.1", DIGEST),
            message("wpsquared", "1.0.0", DIGEST),
            message("cpanel", "1.0.0", &DIGEST.replace("sha256:0", "sha256:1")),
        ] {
            assert!(trusted.verify(other.as_bytes(), &signature).is_none());
        }
        let again = PrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn bad_text_is_refused() {
        assert!(Signature::parse("rsa=AAAA").is_err());
        assert!(Signature::parse("ed25519=not base64!").is_err());
        assert!(Signature::parse(&format!("ed25519={}", B64.encode([0_u8; 63]))).is_err());
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
        // The identity point is a small-order key.
        let mut identity = [0_u8; 32];
        identity[0] = 1;
        assert!(PublicKey::parse(&format!("ed25519:{}", B64.encode(identity))).is_err());
        assert!(TrustedKey::new("a b", PrivateKey::generate().public()).is_err());
        let k = TrustedKey::new("a", PrivateKey::generate().public()).unwrap();
        assert!(TrustedKeys::new(vec![k.clone(), k]).is_err());
        assert!(PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n").is_err());
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile_dir();
        let path = dir.join("vendor.key");
        let key = PrivateKey::generate();
        key.write_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(PrivateKey::read(&path).unwrap().public(), key.public());
        assert!(PrivateKey::generate().write_new(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "panelink-signing-{}",
            hex::encode(rand::random::<[u8; 6]>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
