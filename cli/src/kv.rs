//! `harden kv …`: values encrypted and decrypted on this machine.

use std::io::{IsTerminal, Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_client::backend::encode_query_value;
use harden_client::vault::ShareTerms;
use harden_client::wire::{KvListResponse, KvVersionsResponse, PublicProfile};
use harden_domain::secret::KeyName;

use crate::args::{KvCommand, Output};
use crate::fail::{Fail, Result};
use crate::output::{self, opt};
use crate::session::Session;

pub fn key_name(raw: &str) -> Result<KeyName> {
    // A URL path would drop these segments and name another route.
    if raw == "." || raw == ".." {
        return Err(Fail::usage(format!("invalid name {raw:?}: . and .. cannot be record names")));
    }
    KeyName::parse(raw).map_err(|e| Fail::usage(format!("invalid name {raw:?}: {}", e.0)))
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct OutgoingShare {
    share_id: Uuid,
    recipient_user_id: Uuid,
    permission: String,
    expires_utc: Option<chrono::DateTime<chrono::Utc>>,
    created_utc: chrono::DateTime<chrono::Utc>,
}

/// The open shares of a record or a file (`segments`: its Backend route).
pub async fn open_shares(session: &Session, output: Output, segments: &[&str]) -> Result<()> {
    let shares: Vec<OutgoingShare> = session.get(segments, None).await?;
    let rows = shares
        .iter()
        .map(|s| {
            vec![s.share_id.to_string(), s.recipient_user_id.to_string(), opt(&s.expires_utc.map(|t| t.to_rfc3339()))]
        })
        .collect();
    output::listing(output, &shares, &["SHARE", "RECIPIENT", "EXPIRES"], rows, "no open shares")
}

/// A user of the caller's org named by id, or by name (as `harden users ls` shows it).
pub async fn resolve_user(session: &Session, who: &str) -> Result<Uuid> {
    if let Ok(id) = who.parse::<Uuid>() {
        return Ok(id);
    }
    let profiles: Vec<PublicProfile> = org_directory(session).await?;
    let matches: Vec<_> = profiles.iter().filter(|p| p.name.eq_ignore_ascii_case(who)).collect();
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => Err(Fail::usage(format!("no user named {who:?} in your org (see `harden users ls`)"))),
        _ => Err(Fail::usage(format!("several users are named {who:?}: give the user id"))),
    }
}

pub async fn org_directory(session: &Session) -> Result<Vec<PublicProfile>> {
    session.get(&["users", "org"], None).await
}

/// The value to store: a file, standard input, or a no-echo prompt.
fn read_value(name: &str, file: Option<&std::path::Path>, stdin: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(path) = file {
        let file =
            std::fs::File::open(path).map_err(|e| Fail::usage(format!("cannot read {}: {e}", path.display())))?;
        return read_bounded(file, &path.display().to_string());
    }
    if stdin || !std::io::stdin().is_terminal() {
        let value = read_bounded(std::io::stdin().lock(), "standard input")?;
        if value.is_empty() && !stdin {
            return Err(Fail::usage("standard input is empty: pass --stdin to store an empty value"));
        }
        return Ok(value);
    }
    let typed = crate::prompt::hidden(&format!("Value for {name}: "))
        .map_err(|_| Fail::usage("no value: pass --file, --stdin, or run on a terminal"))?;
    Ok(Zeroizing::new(typed.as_bytes().to_vec()))
}

pub async fn run(session: &Session, output: Output, command: KvCommand) -> Result<()> {
    match command {
        KvCommand::Put { name, file, stdin, write_only, if_version } => {
            let key = key_name(&name)?;
            let value = read_value(&name, file.as_deref(), stdin)?;
            let writer = session.writer(write_only).await?;
            let answer = session.vault.put_value(&writer, &key, &value, if_version).await?;
            let body: serde_json::Value = answer.json()?;
            let version = body["version"].as_i64().unwrap_or_default();
            output::result(output, &body, &format!("stored {name} version {version}"))
        }
        KvCommand::Get { shared: Some(share), json, .. } => {
            let caller = session.caller().await?;
            let opened = session.vault.read_shared(&caller, share).await?;
            let value = Zeroizing::new(STANDARD.decode(&opened.value_b64).map_err(|e| Fail::internal(e.to_string()))?);
            if json {
                let text = std::str::from_utf8(&value).ok();
                return output::json(&json!({
                    "shareId": opened.share_id, "ownerUserId": opened.owner_user_id, "alias": opened.alias,
                    "version": opened.version, "expiresUtc": opened.expires_utc,
                    "versionBound": opened.version_bound, "valueB64": opened.value_b64, "value": text,
                }));
            }
            raw(&value)
        }
        KvCommand::Get { name, version, json, .. } => {
            let name = name.expect("clap requires a name without --shared");
            let key = key_name(&name)?;
            let caller = session.caller().await?;
            let opened = session.vault.get_value(&caller, &key, version).await?;
            if !opened.owner_sealed {
                eprintln!("warning: {name} version {} was not sealed by your own keys: someone with access to the server may have written it", opened.version);
            }
            if json {
                let b64 = Zeroizing::new(STANDARD.encode(opened.value.as_slice()));
                let text = std::str::from_utf8(&opened.value).ok();
                return output::json(&json!({
                    "key": name, "version": opened.version, "ownerSealed": opened.owner_sealed,
                    "valueB64": *b64, "value": text,
                }));
            }
            raw(&opened.value)
        }
        KvCommand::Ls { prefix } => {
            let mut keys = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let query = match &cursor {
                    Some(c) => format!("limit=1000&cursor={}", encode_query_value(c)),
                    None => "limit=1000".to_owned(),
                };
                let page: KvListResponse = session.get(&["kv"], Some(&query)).await?;
                keys.extend(page.keys.into_iter().filter(|k| prefix.as_deref().is_none_or(|p| k.key.starts_with(p))));
                match page.next_cursor {
                    // A server that answers the same cursor again would keep this going for ever.
                    Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                        return Err(Fail::refused("the server answered the same page cursor twice"));
                    }
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let rows =
                keys.iter().map(|k| vec![k.key.clone(), k.version.to_string(), k.updated_utc.to_rfc3339()]).collect();
            output::listing(
                output,
                &keys,
                &["NAME", "VERSION", "UPDATED"],
                rows,
                "no records yet: store one with `harden kv put NAME`",
            )
        }
        KvCommand::Rm { name } => {
            key_name(&name)?;
            session.delete(&["kv", &name]).await?;
            output::result(output, &json!({ "key": name, "deleted": true }), &format!("deleted {name}"))
        }
        KvCommand::History { name } => {
            key_name(&name)?;
            let history: KvVersionsResponse = session.get(&["kv", &name, "versions"], None).await?;
            let rows = history
                .versions
                .iter()
                .map(|v| {
                    let state = if v.deleted { "deleted" } else { "current life" };
                    vec![v.version.to_string(), v.created_utc.to_rfc3339(), opt(&v.user_id), state.to_owned()]
                })
                .collect();
            output::listing(output, &history, &["VERSION", "CREATED", "WRITTEN BY", "STATE"], rows, "no versions")
        }
        KvCommand::Share { name, to, expires, alias, fingerprint } => {
            let key = key_name(&name)?;
            let recipient = resolve_user(session, &to).await?;
            let caller = session.caller().await?;
            let alias = alias.unwrap_or_else(|| name.clone());
            let terms = ShareTerms {
                recipient,
                permission: "read",
                alias: &alias,
                expires_utc: expires,
                expected_fingerprint: fingerprint.as_deref(),
            };
            let body: serde_json::Value = session.vault.share_value(&caller, &key, terms).await?.json()?;
            let id = body["shareId"].as_str().unwrap_or_default().to_owned();
            output::result(output, &body, &format!("shared {name} with {recipient}: share {id}"))
        }
        KvCommand::Shares { name } => {
            key_name(&name)?;
            open_shares(session, output, &["kv", &name, "shares"]).await
        }
        KvCommand::Revoke { name, share_id } => {
            let key = key_name(&name)?;
            session.vault.revoke(session.api_key(), &key, share_id).await?;
            // The recipient is refused from now on; a new data key keeps what they may have kept
            // from opening later versions.
            let rotated = match session.caller().await {
                Ok(caller) => session.vault.rotate_current(&caller, &key).await.is_ok(),
                Err(_) => false,
            };
            let note = if rotated { "the value has a new key" } else { "your next write gives the value a new key" };
            output::result(
                output,
                &json!({ "shareId": share_id, "revoked": true, "rotated": rotated }),
                &format!("revoked share {share_id} of {name}; {note}"),
            )
        }
        KvCommand::Shared => {
            let caller = session.caller().await?;
            let inbox = session.vault.inbox(&caller).await?;
            let rows = inbox
                .iter()
                .map(|i| {
                    vec![
                        i.share_id.to_string(),
                        opt(&i.alias),
                        i.owner_user_id.to_string(),
                        opt(&i.expires_utc.map(|t| t.to_rfc3339())),
                    ]
                })
                .collect();
            output::listing(output, &inbox, &["SHARE", "ALIAS", "OWNER", "EXPIRES"], rows, "nothing is shared with you")
        }
    }
}

/// The most a value may be: its ciphertext must fit the Backend's limit.
const MAX_VALUE: usize = harden_domain::secret::MAX_VALUE_CIPHERTEXT - harden_domain::envelope::VALUE_OVERHEAD;

/// At most [`MAX_VALUE`] bytes from `source` (more is refused before it is all read).
fn read_bounded(source: impl Read, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut value = Zeroizing::new(Vec::new());
    source
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut value)
        .map_err(|e| Fail::usage(format!("cannot read {what}: {e}")))?;
    if value.len() > MAX_VALUE {
        return Err(Fail::usage(format!("the value in {what} is larger than {MAX_VALUE} bytes: store it as a file")));
    }
    Ok(value)
}

/// The value's bytes as they are on standard output.
fn raw(value: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(value)?;
    out.flush()?;
    Ok(())
}
