//! Secrets at rest and API tokens.
//!
//! - [`SecretBox`] encrypts values stored in the database (server API tokens, later link
//!   credentials) with XChaCha20-Poly1305: a fresh random 192-bit nonce per value, so random
//!   nonces never collide in practice, and the value's purpose as associated data, so a ciphertext
//!   cannot be moved to another column. Stored form: `v1:<base64(nonce || ciphertext)>`.
//! - The key is derived from the configured `secret_key` or, when none is configured, from
//!   `<data_dir>/secret.key`, generated on first run with mode 0600 ([`SecretBox::from_config`]).
//! - Admin API tokens are 32 random bytes shown once as `plk_<hex>`; only their SHA-256 is stored
//!   ([`new_api_token`], [`hash_token`]).

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::adapter::Secret;

/// The file the generated key is kept in, inside `data_dir`.
pub const KEY_FILE: &str = "secret.key";

const NONCE_LEN: usize = 24;
const PREFIX: &str = "v1:";

/// Why a secret could not be set up or opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file could not be read or written.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The configured or stored key material is unusable.
    #[error("unusable secret key: {0}")]
    BadKey(String),
    /// A stored value is not ours, was changed, or was encrypted with another key.
    #[error("a stored secret cannot be decrypted (wrong secret_key or corrupted value)")]
    Decrypt,
}

/// Encrypts and decrypts secrets stored in the database.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// The root of keys for other purposes ([`SecretBox::derive_key`]), never the cipher's key.
    root: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// A box whose key is derived from key material: SHA-256 over a fixed label and the material.
    /// Material must be at least 16 bytes (a generated key file holds 64 hex characters).
    pub fn from_material(material: &str) -> Result<Self, Error> {
        let material = material.trim();
        if material.len() < 16 {
            return Err(Error::BadKey(
                "secret_key must be at least 16 characters (32 random bytes recommended)".into(),
            ));
        }
        let key = Sha256::new()
            .chain_update(b"panelink secret_key v1\0")
            .chain_update(material.as_bytes())
            .finalize();
        let root = Sha256::new()
            .chain_update(b"panelink derived keys v1\0")
            .chain_update(material.as_bytes())
            .finalize()
            .into();
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key),
            root,
        })
    }

    /// A key for `purpose` (e.g. the seals of the plugin cache), derived from the same key
    /// material (HMAC-SHA256): independent of the encryption key and of other purposes' keys.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.root)
            .expect("HMAC takes any key size");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The box for a configuration: the configured key material, else the key file in
    /// `data_dir`, created (mode 0600, 32 random bytes as hex) when missing.
    pub fn from_config(secret_key: Option<&Secret>, data_dir: &Path) -> Result<Self, Error> {
        match secret_key {
            Some(material) => Self::from_material(material.expose()),
            None => Self::from_material(&load_or_create_key_file(data_dir)?),
        }
    }

    /// Encrypt `plaintext` for the purpose `context` (e.g. `server_api_token`).
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypt a value [`SecretBox::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Secret, Error> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|raw| raw.len() > NONCE_LEN)
            .ok_or(Error::Decrypt)?;
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::Decrypt)?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| Error::Decrypt)
    }
}

fn load_or_create_key_file(data_dir: &Path) -> Result<String, Error> {
    let path = data_dir.join(KEY_FILE);
    let io_err = |source| Error::KeyFile {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(material) => return Ok(material),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(io_err)?;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let material = hex::encode(key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(material.as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            tracing::info!(path = %path.display(), "generated a new secret key file");
            Ok(material)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(&path).map_err(io_err)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// A new admin API token and the hash to store for it.
pub fn new_api_token() -> (Secret, String) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!("plk_{}", hex::encode(raw));
    let hash = hash_token(&token);
    (Secret::new(token), hash)
}

/// The stored form of an API token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let sb = SecretBox::from_material("0123456789abcdef0123456789abcdef").unwrap();
        let sealed = sb.seal("server_api_token", "TOKEN123");
        assert!(!sealed.contains("TOKEN123"));
        assert_ne!(
            sealed,
            sb.seal("server_api_token", "TOKEN123"),
            "fresh nonce per value"
        );
        assert_eq!(
            sb.open("server_api_token", &sealed).unwrap().expose(),
            "TOKEN123"
        );
        assert!(sb.open("other", &sealed).is_err(), "context is bound");
        let other = SecretBox::from_material("another key material, long enough").unwrap();
        assert!(other.open("server_api_token", &sealed).is_err());
        assert!(sb.open("server_api_token", "v1:AAAA").is_err());
        assert!(SecretBox::from_material("short").is_err());
    }

    #[test]
    fn key_file_is_generated_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("panelink-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = SecretBox::from_config(None, &dir).unwrap();
        let sealed = a.seal("x", "v");
        let b = SecretBox::from_config(None, &dir).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap().expose(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_hash_stably() {
        let (token, hash) = new_api_token();
        assert!(token.expose().starts_with("plk_"));
        assert_eq!(hash_token(token.expose()), hash);
        assert_eq!(hash.len(), 64);
    }
}
