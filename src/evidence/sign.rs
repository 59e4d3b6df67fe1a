//! The Ed25519 key that signs pack manifests.
//!
//! The key comes from configuration (`[evidence] signing_key`, a PKCS#8 PEM file); with
//! none configured it is the file `<db>.evidence-key.pem` beside the database, created
//! on first use with mode 0600. The private key is never logged or put in a pack; the
//! public key is in every pack and at `GET /api/evidence/public-key`.

use anyhow::{Context, Result, bail};
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The key file configured for `serve` (set once at start); else the default beside the DB.
static CONFIGURED: OnceLock<PathBuf> = OnceLock::new();

/// Makes `path` the signing key of this process (`serve` with `[evidence] signing_key`).
pub fn configure(path: PathBuf) {
    let _ = CONFIGURED.set(path);
}

/// Where the signing key of the database at `db` is: configured, or beside it.
pub fn key_path(db: &Path, explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit.or(CONFIGURED.get().map(PathBuf::as_path)) {
        return path.to_path_buf();
    }
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "tokentrail.duckdb".into());
    name.push(".evidence-key.pem");
    db.with_file_name(name)
}

/// A loaded signing key and where it is.
pub struct PackKey {
    key: SigningKey,
    pub path: PathBuf,
    /// Whether this call created the file.
    pub created: bool,
}

impl std::fmt::Debug for PackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackKey").field("path", &self.path).field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl PackKey {
    /// Loads the key at `path`, creating it (mode 0600) if `create` and it does not exist.
    pub fn load_or_create(path: &Path, create: bool) -> Result<PackKey> {
        if path.exists() {
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("reading signing key {}", path.display()))?;
            let key = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 private key in PKCS#8 PEM ({e})", path.display()))?;
            return Ok(PackKey { key, path: path.to_path_buf(), created: false });
        }
        if !create {
            bail!("no signing key at {}", path.display());
        }
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key.to_pkcs8_pem(Default::default()).map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
        write_private(path, pem.as_bytes())?;
        tracing::info!(path = %path.display(), key_id = %key_id(&key.verifying_key()), "created evidence signing key");
        Ok(PackKey { key, path: path.to_path_buf(), created: true })
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public())
    }

    pub fn public_pem(&self) -> String {
        self.public().to_public_key_pem(Default::default()).expect("an Ed25519 public key encodes")
    }

    pub fn sign(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(message).to_bytes())
    }
}

/// The first 16 hex digits of SHA-256 over the raw public key.
pub fn key_id(public: &VerifyingKey) -> String {
    Sha256::digest(public.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A public key from a PEM file or text (SubjectPublicKeyInfo), or 32 bytes in base64.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 public key PEM: {e}"));
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(text).context("not PEM, and not base64")?;
    let raw: [u8; 32] = raw.try_into().map_err(|_| anyhow::anyhow!("an Ed25519 public key is 32 bytes"))?;
    VerifyingKey::from_bytes(&raw).context("not a valid Ed25519 public key")
}

/// Checks `signature` (base64) over `message`.
pub fn verify(public: &VerifyingKey, message: &[u8], signature: &str) -> Result<()> {
    let raw = base64::engine::general_purpose::STANDARD.decode(signature.trim()).context("signature is not base64")?;
    let signature = Signature::from_slice(&raw).context("signature is not 64 bytes")?;
    public.verify(message, &signature).context("the signature does not match")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating signing key {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}
