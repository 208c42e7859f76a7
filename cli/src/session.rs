//! One command's view of the vault: the server and API key from the config, a [`Vault`] over the
//! Backend's routes at the public edge, and the caller unlocked on this machine (by the agent, or
//! with the user secret from `HARDEN_USER_SECRET` or a no-echo prompt).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use harden_client::{ApiCredential, Backend, Caller, Me, Unlocker, Vault, Writer};
use harden_domain::crypto::KdfParams;

use crate::agent;
use crate::config::{self, Profile};
use crate::fail::{Fail, Result};
use crate::prompt;

pub struct Session {
    pub vault: Vault,
    pub profile: Profile,
    pub socket: PathBuf,
}

/// Argon2id parameters for keys sealed here: `HARDEN_ARGON2_M_KIB`, `_T`, `_P` (as the server's
/// settings name them), else harden's defaults.
pub fn kdf_params() -> Result<KdfParams> {
    let read = |name: &str, default: u32| -> Result<u32> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v.parse().map_err(|_| Fail::usage(format!("{name} must be a number"))),
            _ => Ok(default),
        }
    };
    let d = KdfParams::DEFAULT;
    let params = KdfParams {
        m_kib: read("HARDEN_ARGON2_M_KIB", d.m_kib)?,
        t: read("HARDEN_ARGON2_T", d.t)?,
        p: read("HARDEN_ARGON2_P", d.p)?,
    };
    params.checked().map_err(|e| Fail::usage(format!("Argon2 settings: {e}")))
}

pub fn vault_for(server: &str) -> Result<Vault> {
    let params = kdf_params()?;
    let budget = params.m_kib.div_ceil(1024).max(KdfParams::DEFAULT.m_kib.div_ceil(1024));
    let unlocker = Unlocker::new(params, Duration::ZERO, budget).map_err(|e| Fail::usage(format!("{e:#}")))?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // A stalled server does not hang a command (a whole upload may take longer; each read may not).
        .read_timeout(Duration::from_secs(120))
        // Never follow a redirect: it would carry the X-Api-Key header to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("harden-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Fail::internal(e.to_string()))?;
    let backend = Backend::with_client(server, http).map_err(|e| Fail::usage(format!("{e:#}")))?;
    Ok(Vault { backend, unlocker: Arc::new(unlocker) })
}

impl Session {
    pub fn open() -> Result<Self> {
        let profile = config::profile()?;
        let vault = vault_for(&profile.server)?;
        Ok(Self { vault, profile, socket: agent::socket_path()? })
    }

    pub fn api_key(&self) -> ApiCredential<'_> {
        ApiCredential::key(&self.profile.api_key)
    }

    /// A GET of a Backend route as the caller, its JSON answer parsed.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, segments: &[&str], query: Option<&str>) -> Result<T> {
        let answer = self.vault.backend.call(reqwest::Method::GET, segments, query, self.api_key(), None, &[]).await?;
        Ok(answer.ok()?.json()?)
    }

    /// A DELETE of a Backend route as the caller.
    pub async fn delete(&self, segments: &[&str]) -> Result<()> {
        self.vault.backend.call(reqwest::Method::DELETE, segments, None, self.api_key(), None, &[]).await?.ok()?;
        Ok(())
    }

    pub async fn me(&self) -> Result<Me> {
        Ok(self.vault.backend.me(self.api_key()).await?)
    }

    /// The caller with their keys unlocked: the agent's keys when it holds this user's (and they
    /// are the keys the server shows), else the user secret's.
    pub async fn caller(&self) -> Result<Caller<'_>> {
        let me = self.me().await?;
        if let Some(keys) = agent::keys(&self.socket, &self.profile.server, me.id).await {
            if let Ok(caller) = self.vault.resume(self.api_key(), me.clone(), Arc::new(keys)) {
                return Ok(caller);
            }
        }
        let secret = self.secret()?;
        Ok(self.vault.unlock_profile(self.api_key(), me, &secret).await?)
    }

    /// The writer: the caller unlocked, or with `write_only` the API key alone.
    pub async fn writer(&self, write_only: bool) -> Result<Writer<'_>> {
        if write_only {
            return Ok(self.vault.writer(self.api_key(), None).await?);
        }
        Ok(Writer::Owner(self.caller().await?))
    }

    /// The user secret: `HARDEN_USER_SECRET`, else asked on the terminal without echo.
    pub fn secret(&self) -> Result<Zeroizing<String>> {
        user_secret("User secret: ")
    }
}

/// The user secret from `HARDEN_USER_SECRET` or a no-echo prompt; never from argv.
pub fn user_secret(question: &str) -> Result<Zeroizing<String>> {
    if let Some(secret) = std::env::var_os("HARDEN_USER_SECRET").filter(|s| !s.is_empty()) {
        return secret
            .into_string()
            .map(Zeroizing::new)
            .map_err(|_| Fail::usage("HARDEN_USER_SECRET is not valid UTF-8"));
    }
    prompt::hidden(question).map_err(|_| {
        Fail::usage(
            "no user secret: set HARDEN_USER_SECRET, run `harden unlock` on a terminal, or run this on a terminal",
        )
    })
}
