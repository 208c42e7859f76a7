//! `harden files …`: files encrypted before they leave this machine and decrypted after they
//! arrive, each held in memory once (read into one buffer, sealed in it, its base64 encoded a chunk
//! at a time as it is sent; downloaded into one buffer and opened in it), with a progress bar on a
//! terminal.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use harden_client::files::FileShareTerms;

use crate::args::{FilesCommand, Output};
use crate::fail::{Fail, Result};
use crate::output::{self, opt};
use crate::session::Session;

/// A bar on standard error while it is a terminal; nothing otherwise.
fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// The file to upload, refused before it is read when it is larger than any plan allows. It is
/// read into a buffer with room for the sealed header in front and the tag behind, as the Proxy's
/// upload decodes into the request's buffer behind its JSON: sealing in place then moves nothing
/// and never allocates a second buffer. Answers the buffer and where the file's bytes are in it.
fn read_file(path: &std::path::Path) -> Result<(Vec<u8>, std::ops::Range<usize>)> {
    use harden_domain::crypto::{IN_PLACE_HEADER_LEN, TAG_LEN};
    use std::io::Read;
    let limit = harden_domain::Plan::largest_file_size_bytes();
    let cannot = |e: std::io::Error| Fail::usage(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    if len > limit {
        return Err(Fail::usage(format!(
            "{} is {len} bytes; the largest file any plan takes is {limit}",
            path.display()
        )));
    }
    let mut buf = Vec::with_capacity(IN_PLACE_HEADER_LEN + len as usize + TAG_LEN);
    buf.resize(IN_PLACE_HEADER_LEN, 0);
    // A pipe or a device says nothing of its size: read at most one byte past the limit.
    file.take(limit + 1).read_to_end(&mut buf).map_err(cannot)?;
    if (buf.len() - IN_PLACE_HEADER_LEN) as u64 > limit {
        return Err(Fail::usage(format!(
            "{} is larger than the largest file any plan takes ({limit} bytes)",
            path.display()
        )));
    }
    let content = IN_PLACE_HEADER_LEN..buf.len();
    Ok((buf, content))
}

pub async fn run(session: &Session, output: Output, command: FilesCommand) -> Result<()> {
    match command {
        FilesCommand::Put { path, name, content_type, write_only } => {
            let name = match name {
                Some(name) => name,
                None => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| Fail::usage("the file has no UTF-8 name: pass --name"))?,
            };
            harden_client::files::check_file_name(&name)?;
            let writer = session.writer(write_only).await?;
            let (buf, content) = read_file(&path)?;
            let bar = bar(content.len() as u64, "encrypting and uploading");
            let progress = bar.clone();
            let answer = session
                .vault
                .upload_file(&writer, &name, content_type.as_deref(), buf, content, move |sent| {
                    progress.set_position(sent as u64)
                })
                .await;
            bar.finish_and_clear();
            let body: serde_json::Value = answer?.json()?;
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            output::result(output, &body, &format!("uploaded {name} as {id}"))
        }
        FilesCommand::Get { file_id, shared, out } => {
            let (id, is_shared) = match (shared, file_id) {
                (Some(share), _) => (share, true),
                (None, Some(id)) => (id, false),
                (None, None) => return Err(Fail::usage("give a FILE_ID or --shared SHARE_ID")),
            };
            if out.is_none() && std::io::stdout().is_terminal() {
                return Err(Fail::usage("standard output is a terminal: pass -o PATH to save the file"));
            }
            let caller = session.caller().await?;
            let bar = bar(0, "downloading");
            let progress = bar.clone();
            let file = session
                .vault
                .download_file(&caller, id, is_shared, move |read, total| {
                    if let Some(total) = total {
                        progress.set_length(total as u64);
                    }
                    progress.set_position(read as u64);
                })
                .await;
            bar.finish_and_clear();
            let file = file?;
            if !is_shared && !file.owner_sealed {
                eprintln!("warning: file {id} was not sealed by your own keys: it was uploaded with your API key alone, before files were sealed, or by someone with access to the server");
            }
            match &out {
                Some(path) => crate::config::write_private(path, file.content())?,
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(file.content())?;
                    stdout.flush()?;
                }
            }
            if let Some(path) = out {
                let value = json!({
                    "id": id, "fileName": *file.name, "sizeBytes": file.size_bytes, "path": path,
                    "ownerSealed": file.owner_sealed,
                });
                output::result(output, &value, &format!("saved {} to {}", *file.name, path.display()))?;
            }
            Ok(())
        }
        FilesCommand::Ls => {
            let caller = session.caller().await?;
            let mut files = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let query = match &cursor {
                    Some(c) => format!("limit=1000&cursor={}", harden_client::backend::encode_query_value(c)),
                    None => "limit=1000".to_owned(),
                };
                let page = session.vault.list_files(&caller, Some(&query)).await?;
                files.extend(page.files);
                match page.next_cursor {
                    // A server that answers the same cursor again would keep this going for ever.
                    Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                        return Err(Fail::refused("the server answered the same page cursor twice"));
                    }
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let rows = files
                .iter()
                .map(|f| {
                    vec![
                        f.id.to_string(),
                        opt(&f.file_name),
                        f.size_bytes.to_string(),
                        f.content_type.clone(),
                        f.created_utc.to_rfc3339(),
                    ]
                })
                .collect();
            output::listing(
                output,
                &files,
                &["ID", "NAME", "BYTES", "TYPE", "CREATED"],
                rows,
                "no files yet: upload one with `harden files put PATH`",
            )
        }
        FilesCommand::Rm { file_id } => {
            let id = file_id.to_string();
            session.delete(&["files", &id]).await?;
            output::result(output, &json!({ "id": file_id, "deleted": true }), &format!("deleted {file_id}"))
        }
        FilesCommand::Share { file_id, to, expires, fingerprint } => {
            let recipient = crate::kv::resolve_user(session, &to).await?;
            let caller = session.caller().await?;
            let terms = FileShareTerms {
                recipient,
                permission: "read",
                expires_utc: expires,
                expected_fingerprint: fingerprint.as_deref(),
            };
            let body: serde_json::Value = session.vault.share_file(&caller, file_id, terms).await?.json()?;
            let id = body["shareId"].as_str().unwrap_or_default().to_owned();
            output::result(output, &body, &format!("shared {file_id} with {recipient}: share {id}"))
        }
        FilesCommand::Shares { file_id } => {
            crate::kv::open_shares(session, output, &["files", &file_id.to_string(), "shares"]).await
        }
        FilesCommand::Revoke { file_id, share_id } => {
            let (id, share) = (file_id.to_string(), share_id.to_string());
            session.delete(&["files", &id, "shares", &share]).await?;
            output::result(
                output,
                &json!({ "shareId": share_id, "revoked": true }),
                &format!("revoked share {share_id}"),
            )
        }
        FilesCommand::Shared => {
            let caller = session.caller().await?;
            let inbox = session.vault.file_inbox(&caller).await?;
            let rows = inbox
                .iter()
                .map(|i| {
                    vec![
                        i.share_id.to_string(),
                        opt(&i.file_name),
                        i.size_bytes.to_string(),
                        i.owner_user_id.to_string(),
                    ]
                })
                .collect();
            output::listing(output, &inbox, &["SHARE", "NAME", "BYTES", "OWNER"], rows, "no files are shared with you")
        }
    }
}

#[cfg(test)]
mod tests {
    use harden_domain::crypto::{self, DataKey, RecordContext};
    use uuid::Uuid;

    #[test]
    fn a_file_read_for_upload_is_sealed_where_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let content: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let (mut buf, range) = super::read_file(&path).unwrap();
        assert_eq!(&buf[range.clone()], &content[..]);
        let (at, capacity) = (buf.as_ptr(), buf.capacity());
        let key = DataKey::from_bytes([7; 32]);
        let context = RecordContext { kind: "file", org: Uuid::from_u128(1), owner: Uuid::from_u128(2), name: &[] };
        let sealed = crypto::seal_in_place(&key, [9; 12], &context, &mut buf, range);
        assert_eq!(sealed, 0..content.len() + 29, "the header went in front, the tag behind");
        assert_eq!((buf.as_ptr(), buf.capacity()), (at, capacity), "sealing moved or grew the buffer");
        assert_eq!(&*crypto::decrypt_value(&key, &context, &buf[sealed]).unwrap(), &content[..]);
    }
}
