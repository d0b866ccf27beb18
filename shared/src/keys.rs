//! Ed25519 key pairs with key ids, stored as files.
//!
//! Every signer of the trust chain (DESIGN.md, "Trust chain") has one: the branch server signs
//! reports, each technician device signs customer acknowledgements. A key id is a fingerprint
//! of the public key, so a report can name the key that signed it without carrying it. Secret
//! key files are written with mode 0600 and refused when group or others can read them.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What went wrong with a key or a key file. Each variant names the file, so the message is
/// something a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} does not exist (create one with `fieldsync keygen`)")]
    Missing { path: PathBuf },
    #[error("key file {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "secret key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} cannot be written: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness available to make a key: {0}")]
    NoRandomness(String),
    #[error("{0}")]
    BadKey(String),
}

/// The fingerprint of a public key: the first 16 bytes of its SHA-256, in hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let hash = Sha256::digest(key.as_bytes());
        Self(hex::encode(&hash[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A public key with its id, as enrolled in a trust store or written to a `.pub` file.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// The key of these 32 bytes. Parsed keys are kept ([`parsed_keys`]): a verifier meets
    /// the same few branch and device keys for every report, and parsing one is a point
    /// decompression (issue 17).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            KeyError::BadKey(format!("public key has {} bytes, expected 32", bytes.len()))
        })?;
        let cache = parsed_keys();
        if let Some(key) = cache.lock().ok().and_then(|keys| keys.get(&arr).cloned()) {
            return Ok(key);
        }
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|_| KeyError::BadKey("bytes are not an ed25519 public key".into()))?;
        let key = Self::from(key);
        if let Ok(mut keys) = cache.lock() {
            if keys.len() >= PARSED_KEYS_KEPT {
                keys.clear();
            }
            keys.insert(arr, key.clone());
        }
        Ok(key)
    }

    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        let s = s.trim();
        if s.len() != 64 {
            let decoded =
                hex::decode(s).map_err(|_| KeyError::BadKey("public key is not hex".into()))?;
            return Self::from_bytes(&decoded);
        }
        hex::decode_to_slice(s, &mut bytes)
            .map_err(|_| KeyError::BadKey("public key is not hex".into()))?;
        Self::from_bytes(&bytes)
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// Verifies with `verify_strict`, which also rejects weak keys and non-canonical
    /// signatures (so one message has exactly one valid signature per key).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify_strict(message, signature).is_ok()
    }

    /// Writes the public key file (`{"kind":…, "key_id":…, "public_key": hex}`).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let file = PublicKeyFile {
            kind: PUBLIC_KIND.into(),
            key_id: self.id.clone(),
            public_key: self.to_hex(),
        };
        write_file(path, &to_json(&file), 0o644)
    }

    /// Reads a public key file written by [`PublicKey::save`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Self::parse_file(&read_file(path)?, path)
    }

    /// Parses the text of a public key file; `path` only names it in errors. What
    /// [`PublicKey::load`] does once the file is read (and what the fuzzer feeds).
    pub fn parse_file(text: &str, path: &Path) -> Result<Self, KeyError> {
        let file: PublicKeyFile = serde_json::from_str(text).map_err(|e| malformed(path, e))?;
        if file.kind != PUBLIC_KIND {
            return Err(malformed(
                path,
                format!("kind is {:?}, expected {PUBLIC_KIND:?}", file.kind),
            ));
        }
        let key = Self::from_hex(&file.public_key).map_err(|e| malformed(path, e))?;
        if key.id != file.key_id {
            return Err(malformed(
                path,
                format!(
                    "key_id {} does not match the key (its id is {})",
                    file.key_id, key.id
                ),
            ));
        }
        Ok(key)
    }
}

/// How many parsed public keys [`parsed_keys`] keeps before it starts again: far more than
/// the branches and devices one verifier meets, a few hundred KiB at most.
const PARSED_KEYS_KEPT: usize = 4096;

/// The public keys parsed in this process, by their bytes. Only keys that parsed are kept, so
/// a bad key is refused every time with the same error; a key's bytes determine it, so a kept
/// one is exactly what parsing again would give.
fn parsed_keys() -> &'static std::sync::Mutex<std::collections::HashMap<[u8; 32], PublicKey>> {
    static KEYS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<[u8; 32], PublicKey>>,
    > = std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
}

impl From<VerifyingKey> for PublicKey {
    fn from(key: VerifyingKey) -> Self {
        let id = KeyId::of(&key);
        Self { key, id }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// A signing key pair. The secret never appears in `Debug` output.
pub struct KeyPair {
    signing: SigningKey,
    public: PublicKey,
}

impl KeyPair {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// A key pair from a 32-byte secret seed (tests use fixed seeds).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey::from(signing.verifying_key());
        Self { signing, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn id(&self) -> &KeyId {
        self.public.id()
    }

    /// The 64-byte secret-and-public form other ed25519 libraries take (PASETO tokens). The
    /// caller must not store or log it.
    pub fn to_keypair_bytes(&self) -> [u8; 64] {
        self.signing.to_keypair_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// Writes the secret key file with mode 0600 (created that way, never widened later).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let file = SecretKeyFile {
            kind: SECRET_KIND.into(),
            key_id: self.id().clone(),
            public_key: self.public.to_hex(),
            secret_key: hex::encode(self.signing.to_bytes()),
        };
        write_file(path, &to_json(&file), 0o600)
    }

    /// Reads a secret key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private_mode(path)?;
        Self::parse_file(&read_file(path)?, path)
    }

    /// Parses the text of a secret key file; `path` only names it in errors. The file's mode
    /// is [`KeyPair::load`]'s business.
    pub fn parse_file(text: &str, path: &Path) -> Result<Self, KeyError> {
        let file: SecretKeyFile = serde_json::from_str(text).map_err(|e| malformed(path, e))?;
        if file.kind != SECRET_KIND {
            return Err(malformed(
                path,
                format!("kind is {:?}, expected {SECRET_KIND:?}", file.kind),
            ));
        }
        let seed: [u8; 32] = hex::decode(file.secret_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed(path, "secret_key is not 32 bytes of hex"))?;
        let pair = Self::from_seed(&seed);
        if pair.public.to_hex() != file.public_key.trim() || pair.id() != &file.key_id {
            return Err(malformed(
                path,
                "public_key or key_id does not match the secret key",
            ));
        }
        Ok(pair)
    }

    /// Loads the key at `path`, or generates one and saves it there if the file is absent
    /// (what `serve` does on first run). Returns whether a key was created.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Ok(pair) => Ok((pair, false)),
            Err(KeyError::Missing { .. }) => {
                let pair = Self::generate()?;
                pair.save(path)?;
                Ok((pair, true))
            }
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", self.id())
    }
}

/// Parses a hex ed25519 signature.
pub fn signature_from_hex(s: &str) -> Option<Signature> {
    // Decoded in place (issue 17: two per report checked); anything but 128 hex digits is
    // refused, as decoding to a vector of any length and then asking for 64 bytes did.
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(s, &mut bytes).ok()?;
    Some(Signature::from_bytes(&bytes))
}

const SECRET_KIND: &str = "fieldsync-ed25519-secret-key";
const PUBLIC_KIND: &str = "fieldsync-ed25519-public-key";

#[derive(Serialize, Deserialize)]
struct SecretKeyFile {
    kind: String,
    key_id: KeyId,
    public_key: String,
    secret_key: String,
}

#[derive(Serialize, Deserialize)]
struct PublicKeyFile {
    kind: String,
    key_id: KeyId,
    public_key: String,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs of strings cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn malformed(path: &Path, reason: impl fmt::Display) -> KeyError {
    KeyError::Malformed {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn read_file(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => KeyError::Missing {
            path: path.to_owned(),
        },
        std::io::ErrorKind::InvalidData => malformed(path, "not UTF-8 text"),
        _ => KeyError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
            Ok(())
        }
        // Let the read report a missing or unreadable file with its own message.
        Err(_) => Ok(()),
    }
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Writes `text` to a temporary file with `mode` in the same folder, syncs it and renames it
/// into place, so a crash never leaves half a key behind.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    let unwritable = |source| KeyError::Unwritable {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(unwritable)?;
    }
    let tmp = path.with_extension("tmp-write");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let _ = std::fs::remove_file(&tmp);
    let mut file = options.open(&tmp).map_err(unwritable)?;
    file.write_all(text.as_bytes()).map_err(unwritable)?;
    file.sync_all().map_err(unwritable)?;
    std::fs::rename(&tmp, path).map_err(unwritable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_exactly_128_hex_digits() {
        // Issue 17: decoded in place; the same signatures read as when decoded to a vector.
        let pair = KeyPair::from_seed(&[3; 32]);
        let signature = pair.sign(b"statement");
        let text = hex::encode(signature.to_bytes());
        assert_eq!(signature_from_hex(&text), Some(signature));
        assert_eq!(signature_from_hex(&text.to_uppercase()), Some(signature));
        for refused in [
            &text[..126],
            &text[..127],
            "",
            &format!("{text}00"),
            &format!("{}zz", &text[..126]),
            &format!(" {}", &text[..127]),
        ] {
            assert_eq!(signature_from_hex(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_kept_parsed_key_is_the_key_and_a_bad_key_is_refused_every_time() {
        // Issue 17: parsed keys are kept by their bytes.
        let pair = KeyPair::from_seed(&[21; 32]);
        let hex = pair.public().to_hex();
        let first = PublicKey::from_hex(&hex).expect("key");
        let again = PublicKey::from_hex(&format!(" {hex}\n")).expect("key");
        assert_eq!(first, again);
        assert_eq!(&first, pair.public());
        let message = b"kept";
        assert!(again.verify(message, &pair.sign(message)));
        // Not a curve point (about half of all y have no x on edwards25519), not hex, not 32
        // bytes.
        let not_a_point = (2u8..=255)
            .map(|b| {
                let mut bytes = [0u8; 32];
                bytes[0] = b;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("a y off the curve");
        for _ in 0..2 {
            assert!(PublicKey::from_bytes(&not_a_point).is_err());
            assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
            assert!(PublicKey::from_hex("abcd").is_err());
        }
    }

    #[test]
    fn secret_key_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/branch.key");
        let pair = KeyPair::generate().expect("random");
        pair.save(&path).expect("save");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = KeyPair::load(&path).expect("load");
        assert_eq!(loaded.id(), pair.id());
        let sig = loaded.sign(b"hello");
        assert!(pair.public().verify(b"hello", &sig));
        assert!(!pair.public().verify(b"hellO", &sig));
    }

    #[test]
    fn public_key_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("branch.pub");
        let pair = KeyPair::from_seed(&[3; 32]);
        pair.public().save(&path).expect("save");
        assert_eq!(&PublicKey::load(&path).expect("load"), pair.public());
    }

    #[test]
    fn key_files_parse_from_their_text_as_load_reads_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = KeyPair::from_seed(&[4; 32]);
        let (public, secret) = (dir.path().join("k.pub"), dir.path().join("k.key"));
        pair.public().save(&public).expect("save");
        pair.save(&secret).expect("save");
        let text = std::fs::read_to_string(&public).expect("read");
        assert_eq!(
            &PublicKey::parse_file(&text, &public).expect("parse"),
            pair.public()
        );
        let text = std::fs::read_to_string(&secret).expect("read");
        assert_eq!(
            KeyPair::parse_file(&text, &secret).expect("parse").id(),
            pair.id()
        );
        // The path only names the file in errors.
        let e = PublicKey::parse_file("{", Path::new("x.pub")).expect_err("not JSON");
        assert!(e.to_string().contains("x.pub"), "{e}");
        let e = KeyPair::parse_file(&text.replace("secret", "public"), Path::new("y.key"))
            .expect_err("wrong kind");
        assert!(e.to_string().contains("y.key"), "{e}");
    }

    #[test]
    fn missing_unreadable_and_malformed_files_have_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.key");
        let err = KeyPair::load(&missing).expect_err("missing");
        assert!(matches!(err, KeyError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope.key"));

        let garbage = dir.path().join("garbage.key");
        write_file(&garbage, "not json", 0o600).expect("write");
        assert!(matches!(
            KeyPair::load(&garbage),
            Err(KeyError::Malformed { .. })
        ));

        let pair = KeyPair::from_seed(&[9; 32]);
        let wrong_id = dir.path().join("wrong.key");
        let text = to_json(&SecretKeyFile {
            kind: SECRET_KIND.into(),
            key_id: KeyId("00".into()),
            public_key: pair.public().to_hex(),
            secret_key: hex::encode([9u8; 32]),
        });
        write_file(&wrong_id, &text, 0o600).expect("write");
        assert!(matches!(
            KeyPair::load(&wrong_id),
            Err(KeyError::Malformed { .. })
        ));

        // A directory where a file is expected cannot be read.
        let err = KeyPair::load(dir.path()).expect_err("a directory");
        assert!(
            matches!(
                err,
                KeyError::Unreadable { .. } | KeyError::InsecurePermissions { .. }
            ),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn secret_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("branch.key");
        KeyPair::generate()
            .expect("random")
            .save(&path)
            .expect("save");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = KeyPair::load(&path).expect_err("too open");
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn load_or_generate_creates_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let (a, created) = KeyPair::load_or_generate(&path).expect("first");
        assert!(created);
        let (b, created) = KeyPair::load_or_generate(&path).expect("second");
        assert!(!created);
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn key_id_is_a_stable_fingerprint() {
        let pair = KeyPair::from_seed(&[1; 32]);
        assert_eq!(pair.id().as_str().len(), 32);
        assert_eq!(pair.id(), KeyPair::from_seed(&[1; 32]).id());
        assert_ne!(pair.id(), KeyPair::from_seed(&[2; 32]).id());
    }
}
