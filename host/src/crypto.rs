//! Secrets at rest and API tokens.
//!
//! - [`SecretBox`] encrypts values stored in the database (server API tokens, later link
//!   credentials) with XChaCha20-Poly1305: a fresh random 192-bit nonce per value, so random
//!   nonces never collide in practice, and the value's purpose as associated data, so a ciphertext
//!   cannot be moved to another column. Stored form: `v1:<base64(nonce || ciphertext)>`.
//! - The key comes from the configured `secret_key` or, when none is configured, from
//!   `<data_dir>/secret.key`, generated on first run with mode 0600 ([`SecretBox::from_config`]);
//!   a key file that others can read is warned about at start. Either must be 32 random bytes,
//!   written as 64 hex characters or in base64 (standard or URL-safe, padded or not): anything
//!   else, a passphrase included, is refused at start ([`key_bytes`]). No passphrase KDF is
//!   needed: the cipher's key is SHA-256 over a fixed label and the key text, which with 256
//!   random bits in is as strong as the bits themselves (and is the derivation every earlier
//!   version used, so generated key files and 32-byte keys keep opening what they sealed).
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
    /// A box whose key is derived from key material: 32 random bytes as hex or base64 (see
    /// [`key_bytes`]), the cipher's key being SHA-256 over a fixed label and the text.
    pub fn from_material(material: &str) -> Result<Self, Error> {
        let material = material.trim();
        key_bytes(material)?;
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
            None => {
                let material = load_or_create_key_file(data_dir)?;
                let path = data_dir.join(KEY_FILE);
                Self::from_material(&material).map_err(|e| match e {
                    Error::BadKey(why) => Error::BadKey(format!("{}: {why}", path.display())),
                    e => e,
                })
            }
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

/// The 32 bytes a `secret_key` (or key file) must hold: 64 hex characters, or base64 in the
/// standard or URL-safe alphabet, padded or not. Refused, with what to do instead: anything
/// else (a passphrase, a shorter or longer key), and 32 bytes with fewer than 16 different
/// values (`000…`, a repeated pattern: not random).
pub fn key_bytes(material: &str) -> Result<[u8; 32], Error> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let material = material.trim();
    let decoded = if material.len() == 64 {
        hex::decode(material).ok()
    } else {
        [&B64, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(material).ok())
    };
    let bytes: [u8; 32] = decoded.and_then(|d| d.try_into().ok()).ok_or_else(|| {
        Error::BadKey(format!(
            "secret_key must be 32 random bytes written as 64 hex characters or in base64 \
                 (generate one with `openssl rand -hex 32`); the value given is {} characters \
                 that are neither (passphrases are not accepted)",
            material.chars().count()
        ))
    })?;
    let distinct = bytes
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct < 16 {
        return Err(Error::BadKey(
            "secret_key must be 32 random bytes; the value given repeats a few byte values \
             (generate one with `openssl rand -hex 32`)"
                .into(),
        ));
    }
    Ok(bytes)
}

/// Why a key file is unsafe to leave as it is: `Some` when its mode lets group or others read
/// or write it (checked at every start; a warning, not a refusal, so a start is never blocked
/// by a mode another tool set).
pub fn key_file_exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "the secret key file {} has mode {mode:04o}: group or others can read it; \
                 run `chmod 600` on it",
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn load_or_create_key_file(data_dir: &Path) -> Result<String, Error> {
    let path = data_dir.join(KEY_FILE);
    let io_err = |source| Error::KeyFile {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(material) => {
            if let Some(warning) = key_file_exposure(&path) {
                tracing::warn!(path = %path.display(), "{warning}");
            }
            return Ok(material);
        }
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
        let sb = SecretBox::from_material(KEY_A).unwrap();
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
        let other = SecretBox::from_material(KEY_B).unwrap();
        assert!(other.open("server_api_token", &sealed).is_err());
        assert!(sb.open("server_api_token", "v1:AAAA").is_err());
        assert!(SecretBox::from_material("short").is_err());
    }

    const KEY_A: &str = "3f8a1c0d9e7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa012345";
    const KEY_B: &str = "BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSY=";

    #[test]
    fn the_key_is_32_random_bytes_in_hex_or_base64() {
        assert!(key_bytes(KEY_A).is_ok());
        assert!(key_bytes(KEY_B).is_ok(), "standard base64, padded");
        assert!(key_bytes(KEY_B.trim_end_matches('=')).is_ok(), "unpadded");
        let url_safe =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(KEY_A).unwrap());
        assert!(key_bytes(&url_safe).is_ok(), "{url_safe}");
        assert!(
            key_bytes(&format!("  {KEY_A}\n")).is_ok(),
            "a key file's newline"
        );
        for bad in [
            "",
            "short",
            "0123456789abcdef",
            "a sixteen character passphrase that is long",
            "panelink test secret key material 0123456789",
            &KEY_A[..62],
            &format!("{KEY_A}00"),
            &"0".repeat(64),
            &"ab".repeat(32),
        ] {
            let e = key_bytes(bad).unwrap_err().to_string();
            assert!(e.contains("32 random bytes"), "{bad}: {e}");
            assert!(SecretBox::from_material(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_sealed_by_earlier_versions_still_open() {
        // Every earlier version derived the cipher's key as SHA-256(label || key text): a value
        // sealed that way (as by a generated key file) opens with the same key text today.
        let legacy_key = Sha256::new()
            .chain_update(b"panelink secret_key v1\0")
            .chain_update(KEY_A.as_bytes())
            .finalize();
        let legacy = SecretBox {
            cipher: XChaCha20Poly1305::new(&legacy_key),
            root: [0; 32],
        };
        let sealed = legacy.seal("server_api_token", "OLD TOKEN");
        let today = SecretBox::from_material(&format!("{KEY_A}\n")).unwrap();
        assert_eq!(
            today.open("server_api_token", &sealed).unwrap().expose(),
            "OLD TOKEN"
        );
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
            assert_eq!(key_file_exposure(&dir.join(KEY_FILE)), None);
            std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let warning = key_file_exposure(&dir.join(KEY_FILE)).expect("a warning");
            assert!(
                warning.contains("0644") && warning.contains("chmod 600"),
                "{warning}"
            );
            assert!(
                SecretBox::from_config(None, &dir).is_ok(),
                "a warning, not a refusal"
            );
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
