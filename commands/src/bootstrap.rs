//! What a fresh installation creates on first start: the server's master key and the global admin.
//!
//! Both secrets are written to files in the data dir with mode 0600, created exclusively (written to
//! a private temporary file first, then linked or renamed into place, so a reader never sees half a
//! file). The global admin's key is never logged; only the path is.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use uuid::Uuid;

use harden_domain::user::UserCommand;
use harden_domain::UserId;

use crate::bus::{Committed, Meta};
use crate::error::Error;
use crate::keys;
use crate::service::Harden;

pub const GLOBAL_ADMIN_KEY_FILE: &str = "global-admin.key";
pub const MASTER_KEY_FILE: &str = "master.key";

/// The server's 32-byte master key. Later features derive from it the HMAC key for ids made from
/// names and emails and the key that encrypts stored S3 credentials. Every instance of one
/// deployment must share it.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl MasterKey {
    pub fn parse_b64(b64: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context("HARDEN_MASTER_KEY must be 32 bytes, base64 encoded")?;
        Ok(Self(SecretBox::new(Box::new(bytes))))
    }

    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// A key for one purpose (`label`), derived with HKDF-SHA256: purposes never share a key.
    pub fn derive(&self, label: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, self.expose())
            .expand(label, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }
}

/// Uses the configured key; otherwise, outside production, reads or creates `master.key` in the
/// data dir. In production a missing key is an error: a generated key on one instance would not be
/// shared by the others.
pub fn master_key(configured: Option<&SecretString>, production: bool, data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Some(key) = configured {
        return MasterKey::parse_b64(key.expose_secret());
    }
    if production {
        bail!("HARDEN_MASTER_KEY is required when HARDEN_ENV=production (32 random bytes, base64)");
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    if !path.exists() {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let encoded = STANDARD.encode(bytes);
        match write_secret_file(data_dir, MASTER_KEY_FILE, encoded.as_bytes(), Placement::Exclusive) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated the master key (set HARDEN_MASTER_KEY in production)")
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("Failed to write {}", path.display())),
        }
    }
    let b64 = fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
    MasterKey::parse_b64(&b64).with_context(|| format!("{} is not a valid master key", path.display()))
}

#[derive(Debug)]
pub enum GlobalAdmin {
    /// This start created the global admin; its key is at the path.
    Created(PathBuf, Committed),
    /// It existed already.
    Existing,
}

/// Creates the global admin if it does not exist. The key is written to a private temporary file
/// before the command runs, so a committed admin never lacks its key file; the file is moved into
/// place only if this instance won the (fixed-id) aggregate.
pub async fn ensure_global_admin(harden: &Harden, data_dir: &Path) -> anyhow::Result<GlobalAdmin> {
    let path = data_dir.join(GLOBAL_ADMIN_KEY_FILE);
    let key = keys::draw();
    let temp = write_temp_secret(data_dir, keys::expose(&key.plaintext).as_bytes())?;
    let outcome = harden
        .users
        .execute(
            &UserId::GLOBAL_ADMIN.to_string(),
            UserCommand::BootstrapGlobalAdmin { key: key.issued },
            &Meta::default(),
        )
        .await;
    match outcome {
        Ok(committed) => {
            fs::rename(&temp, &path)
                .with_context(|| format!("Failed to move the global admin key to {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the global admin; its API key is in this file");
            Ok(GlobalAdmin::Created(path, committed))
        }
        Err(Error::Conflict(_)) => {
            fs::remove_file(&temp).ok();
            if !path.exists() {
                tracing::warn!(
                    path = %path.display(),
                    "the global admin exists but its key file is missing here; run `harden bootstrap --rotate-global-admin-key` to issue a new key"
                );
            }
            Ok(GlobalAdmin::Existing)
        }
        Err(e) => {
            fs::remove_file(&temp).ok();
            Err(anyhow::anyhow!("{e}").context("Failed to bootstrap the global admin"))
        }
    }
}

/// Issues a new global admin key (every previous one stops working) and writes it to the key file.
pub async fn rotate_global_admin_key(harden: &Harden, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(GLOBAL_ADMIN_KEY_FILE);
    let key = keys::draw();
    let temp = write_temp_secret(data_dir, keys::expose(&key.plaintext).as_bytes())?;
    let rotated = harden
        .users
        .execute(&UserId::GLOBAL_ADMIN.to_string(), UserCommand::RotateApiKey { key: key.issued }, &Meta::default())
        .await;
    if let Err(e) = rotated {
        fs::remove_file(&temp).ok();
        return Err(anyhow::anyhow!("{e}").context("Failed to rotate the global admin key"));
    }
    fs::rename(&temp, &path).with_context(|| format!("Failed to write {}", path.display()))?;
    Ok(path)
}

enum Placement {
    /// Fails with `AlreadyExists` if the file is there.
    Exclusive,
}

fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_temp_secret(dir: &Path, contents: &[u8]) -> anyhow::Result<PathBuf> {
    ensure_private_dir(dir).with_context(|| format!("Failed to create the data dir {}", dir.display()))?;
    let temp = dir.join(format!(".secret-{}.tmp", Uuid::new_v4()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("Failed to create {}", temp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(temp)
}

fn write_secret_file(dir: &Path, name: &str, contents: &[u8], placement: Placement) -> io::Result<()> {
    let temp = write_temp_secret(dir, contents).map_err(io::Error::other)?;
    let result = match placement {
        Placement::Exclusive => fs::hard_link(&temp, dir.join(name)),
    };
    fs::remove_file(&temp).ok();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("harden-mk-{}", Uuid::new_v4()));
        let first = master_key(None, false, &dir).unwrap();
        let second = master_key(None, false, &dir).unwrap();
        assert_eq!(first.expose(), second.expose());
        let mode = fs::metadata(dir.join(MASTER_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn production_requires_a_configured_master_key() {
        let dir = std::env::temp_dir().join(format!("harden-mk-{}", Uuid::new_v4()));
        let err = master_key(None, true, &dir).err().unwrap();
        assert!(err.to_string().contains("HARDEN_MASTER_KEY is required"));
        assert!(!dir.exists());
        let configured = SecretString::from(STANDARD.encode([7u8; 32]));
        assert_eq!(master_key(Some(&configured), true, &dir).unwrap().expose(), &[7u8; 32]);
        let short = SecretString::from(STANDARD.encode([7u8; 16]));
        assert!(master_key(Some(&short), true, &dir).is_err());
    }
}
