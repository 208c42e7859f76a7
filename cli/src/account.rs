//! Login, the agent, your keys, your org's users, and its audit trail.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use harden_client::pins::VerifiedProfile;
use harden_client::wire::PublicProfile;
use harden_client::ApiCredential;
use harden_domain::audit_chain::{self, Served};

use crate::agent;
use crate::args::{KeysCommand, Output};
use crate::config::{self, Config};
use crate::fail::{Fail, Result};
use crate::output::{self, opt};
use crate::session::{self, Session};

/// A short, non-secret name for an API key: the first 16 hex digits of its SHA-256.
fn key_fingerprint(api_key: &str) -> String {
    hex(&Sha256::digest(api_key.as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn login(output: Output, server: &str) -> Result<()> {
    let server = config::normalize_server(server)?;
    let api_key = match std::env::var("HARDEN_API_KEY").ok().filter(|k| !k.is_empty()) {
        Some(key) => zeroize::Zeroizing::new(key),
        None => crate::prompt::hidden("API key: ")
            .map_err(|_| Fail::usage("no terminal to ask for the API key: set HARDEN_API_KEY"))?,
    };
    let api_key = zeroize::Zeroizing::new(api_key.trim().to_owned());
    if api_key.is_empty() {
        return Err(Fail::usage("the API key is empty"));
    }
    // Checked before it is stored: a typo is found now, not at the next command.
    let vault = session::vault_for(&server)?;
    let me = vault.backend.me(ApiCredential::key(&api_key)).await?;
    let path = config::save(&Config { server: Some(server.clone()), api_key: Some(api_key.to_string()) })?;
    output::result(
        output,
        &json!({ "server": server, "userId": me.id, "orgId": me.org_id, "config": path }),
        &format!("logged in to {server} as user {} (org {}); saved to {}", me.id, opt(&me.org_id), path.display()),
    )
}

pub async fn logout(output: Output) -> Result<()> {
    let removed = config::remove()?;
    let locked = agent::lock(&agent::socket_path()?).await;
    let text = match (removed, locked) {
        (true, _) => "logged out: the stored API key is gone",
        (false, _) => "no stored API key",
    };
    output::result(output, &json!({ "removed": removed, "agentStopped": locked }), text)
}

pub async fn whoami(session: &Session, output: Output) -> Result<()> {
    let raw: serde_json::Value = session.get(&["users", "me"], None).await?;
    let profile: PublicProfile = serde_json::from_value(raw.clone()).map_err(|e| Fail::internal(e.to_string()))?;
    let verified = VerifiedProfile::from(profile);
    let value = json!({
        "server": session.profile.server,
        "userId": raw["id"],
        "name": raw["name"],
        "role": raw["role"],
        "orgId": raw["orgId"],
        "apiKeyFingerprint": key_fingerprint(&session.profile.api_key),
        "keysFingerprint": verified.fingerprint,
        "keysVerified": verified.keys_verified,
    });
    let text = format!(
        "user      {} ({})\nrole      {}\norg       {}\nserver    {}\napi key   {}\nkeys      {}{}",
        raw["id"].as_str().unwrap_or("-"),
        raw["name"].as_str().unwrap_or("-"),
        raw["role"].as_str().unwrap_or("-"),
        raw["orgId"].as_str().unwrap_or("-"),
        session.profile.server,
        key_fingerprint(&session.profile.api_key),
        verified.fingerprint.as_deref().unwrap_or("none yet: run `harden keys generate`"),
        if verified.fingerprint.is_some() && !verified.keys_verified { " (no signed bundle)" } else { "" },
    );
    output::result(output, &value, &text)
}

pub async fn unlock(session: &Session, output: Output, hold: Duration, status: bool) -> Result<()> {
    if status {
        return match agent::status(&session.socket).await {
            Some(status) => {
                let text = match (status.user, status.expires_in_secs) {
                    (Some(user), Some(left)) => format!(
                        "unlocked: user {user}, {left} s left; {} unlock(s), served {} command(s)",
                        status.unlocks, status.served
                    ),
                    _ => "the agent holds no keys".to_owned(),
                };
                output::result(output, &status, &text)
            }
            None => output::result(output, &json!({ "running": false }), "locked: no agent is running"),
        };
    }
    let me = session.me().await?;
    let secret = session.secret()?;
    let caller = session.vault.unlock_profile(session.api_key(), me, &secret).await?;
    drop(secret);
    agent::load(&session.socket, &session.profile.server, caller.me.id, &caller.keys, hold).await?;
    output::result(
        output,
        &json!({ "userId": caller.me.id, "forSecs": hold.as_secs(), "socket": session.socket }),
        &format!("unlocked for {} s (agent on {})", hold.as_secs(), session.socket.display()),
    )
}

pub async fn lock(output: Output) -> Result<()> {
    let stopped = agent::lock(&agent::socket_path()?).await;
    let text = if stopped { "locked: the agent stopped and its keys are gone" } else { "no agent was running" };
    output::result(output, &json!({ "stopped": stopped }), text)
}

pub async fn keys(session: &Session, output: Output, command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Generate => {
            // HARDEN_NEW_USER_SECRET, else HARDEN_USER_SECRET (a script's one secret), else typed twice.
            let env = if std::env::var_os("HARDEN_NEW_USER_SECRET").is_none()
                && std::env::var_os("HARDEN_USER_SECRET").is_some()
            {
                "HARDEN_USER_SECRET"
            } else {
                "HARDEN_NEW_USER_SECRET"
            };
            let secret = crate::prompt::new_secret("New user secret: ", env)?;
            let keys = session.vault.generate_keys(session.api_key(), &secret).await?;
            output::result(output, &keys, "generated your key pairs on this machine; only their sealed form left it")
        }
        KeysCommand::Rekey => {
            let old = session.secret()?;
            let new = crate::prompt::new_secret("New user secret: ", "HARDEN_NEW_USER_SECRET")?;
            let keys = session.vault.rekey(session.api_key(), &old, &new).await?;
            // The agent's keys are the same keys; it goes anyway, so the old secret unlocks nothing anywhere.
            agent::lock(&session.socket).await;
            output::result(output, &keys, "your keys are sealed under the new secret")
        }
        KeysCommand::Fingerprint { user } => {
            let profile: PublicProfile = match user {
                None => session.get(&["users", "me"], None).await?,
                Some(who) => {
                    let id = crate::kv::resolve_user(session, &who).await?;
                    session.get(&["users", "org", &id.to_string()], None).await?
                }
            };
            let verified = VerifiedProfile::from(profile);
            let Some(fingerprint) = verified.fingerprint.clone() else {
                return Err(Fail::refused(format!("user {} has no keys yet", verified.profile.id)));
            };
            let note = if verified.keys_verified { "" } else { " (no signed bundle)" };
            output::result(output, &verified, &format!("{fingerprint}{note}"))
        }
    }
}

pub async fn users_ls(session: &Session, output: Output) -> Result<()> {
    let profiles: Vec<VerifiedProfile> =
        crate::kv::org_directory(session).await?.into_iter().map(VerifiedProfile::from).collect();
    let rows = profiles
        .iter()
        .map(|p| {
            let role = if p.profile.is_admin { "admin" } else { "member" };
            let fp = match (&p.fingerprint, p.keys_verified) {
                (Some(f), true) => f.clone(),
                (Some(f), false) => format!("{f} (unverified)"),
                (None, _) => "no keys yet".into(),
            };
            vec![p.profile.id.to_string(), p.profile.name.clone(), role.to_owned(), fp]
        })
        .collect();
    output::listing(output, &profiles, &["ID", "NAME", "ROLE", "KEY FINGERPRINT"], rows, "no users")
}

/// The audit filters `harden audit ls` takes.
pub struct AuditFilter {
    pub key: Option<String>,
    pub user: Option<Uuid>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub all: bool,
    pub limit: Option<usize>,
}

async fn audit_entries(session: &Session, query: Vec<(String, String)>, limit: Option<usize>) -> Result<Vec<Served>> {
    let filters: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ok(harden_client::audit::entries(&session.vault.backend, session.api_key(), &filters, limit).await?)
}

pub async fn audit_ls(session: &Session, output: Output, filter: AuditFilter) -> Result<()> {
    let mut query = Vec::new();
    if let Some(key) = filter.key {
        query.push(("key".into(), key));
    }
    if let Some(user) = filter.user {
        query.push(("userId".into(), user.to_string()));
    }
    if let Some(since) = filter.since {
        query.push(("since".into(), since.to_rfc3339()));
    }
    if let Some(until) = filter.until {
        query.push(("until".into(), until.to_rfc3339()));
    }
    if filter.all {
        query.push(("scope".into(), "all".into()));
    }
    let entries = audit_entries(session, query, filter.limit).await?;
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.timestamp_utc.clone(),
                e.action.clone(),
                opt(&e.key),
                opt(&e.version),
                opt(&e.user_id),
            ]
        })
        .collect();
    output::listing(output, &entries, &["SEQ", "TIME", "ACTION", "KEY", "VERSION", "USER"], rows, "no audit entries")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    intact: bool,
    entries: usize,
    head_seq: Option<i64>,
    head_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broken_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Recomputes the org's whole chain as the server serves it (every scope), on this machine.
pub async fn audit_verify(session: &Session, output: Output, head: Option<&str>) -> Result<()> {
    let me = session.me().await?;
    let org = me.org_id.ok_or_else(|| Fail::usage("the global admin has no org audit"))?;
    let entries = audit_entries(session, vec![("scope".into(), "all".into())], None).await?;
    let last = entries.last();
    let (head_seq, head_hash) = (last.map(|e| e.seq), last.map(|e| e.hash.clone()));
    match audit_chain::verify(org, &entries, head) {
        Ok(()) => output::result(
            output,
            &Verified { intact: true, entries: entries.len(), head_seq, head_hash: head_hash.clone(), broken_at: None, reason: None },
            &format!(
                "audit chain of org {org} intact: {} entries, head {} (save it and pass --head later to check nothing before it changed)",
                entries.len(),
                head_hash.as_deref().unwrap_or("-")
            ),
        ),
        Err(audit_chain::Broken { seq, reason }) => {
            if output == Output::Json {
                output::json(&Verified {
                    intact: false,
                    entries: entries.len(),
                    head_seq,
                    head_hash,
                    broken_at: Some(seq),
                    reason: Some(reason.clone()),
                })?;
            }
            Err(Fail::refused(format!("audit chain of org {org} BROKEN at entry {seq}: {reason}")))
        }
    }
}
