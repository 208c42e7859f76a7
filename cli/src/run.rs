//! `harden run` and `harden inject`: secrets handed to programs without passing through argv,
//! logs or disk (except the file `inject -o` writes, 0600 and atomically).
//!
//! A reference is `harden://kv/<name>`, `harden://kv/<name>?version=N` or
//! `harden://shared/<shareId>`. Each is resolved once per command, with the caller's keys
//! unlocked on this machine; the keys and the values are dropped (zeroized) once the program has
//! started.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_client::Caller;

use crate::args::RunArgs;
use crate::fail::{Fail, Result};
use crate::session::Session;

const SCHEME: &str = "harden://";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    Kv { name: String, version: Option<u64> },
    Shared(Uuid),
}

impl Reference {
    /// A `harden://` reference; `Ok(None)` when `raw` is not one (a plain value).
    pub fn parse(raw: &str) -> Result<Option<Self>> {
        let Some(rest) = raw.trim().strip_prefix(SCHEME) else { return Ok(None) };
        let bad = |why: &str| Fail::usage(format!("invalid reference {raw:?}: {why}"));
        if let Some(id) = rest.strip_prefix("shared/") {
            return id.parse().map(|id| Some(Reference::Shared(id))).map_err(|_| bad("a share id is a UUID"));
        }
        let Some(path) = rest.strip_prefix("kv/") else {
            return Err(bad("use harden://kv/NAME, harden://kv/NAME?version=N or harden://shared/SHARE_ID"));
        };
        let (name, version) = match path.split_once('?') {
            Some((name, query)) => {
                let v = query.strip_prefix("version=").ok_or_else(|| bad("the only parameter is version=N"))?;
                (name, Some(v.parse::<u64>().map_err(|_| bad("version is a number"))?))
            }
            None => (path, None),
        };
        crate::kv::key_name(name)?;
        Ok(Some(Reference::Kv { name: name.to_owned(), version }))
    }
}

/// The values of `references`, each fetched once.
async fn resolve(
    session: &Session,
    caller: &Caller<'_>,
    references: impl IntoIterator<Item = Reference>,
    allow_unsealed: bool,
) -> Result<BTreeMap<Reference, Zeroizing<Vec<u8>>>> {
    let mut values = BTreeMap::new();
    for reference in references {
        if values.contains_key(&reference) {
            continue;
        }
        let value = match &reference {
            Reference::Kv { name, version } => {
                let key = crate::kv::key_name(name)?;
                let opened = session.vault.get_value(caller, &key, *version).await.map_err(|e| {
                    let fail = Fail::from(e);
                    Fail { message: format!("harden://kv/{name}: {}", fail.message), ..fail }
                })?;
                if !opened.owner_sealed && !allow_unsealed {
                    return Err(Fail::refused(format!(
                        "harden://kv/{name} version {} was not sealed by your own keys (someone with access to the server may have written it): check it with `harden kv get {name}`, store it again with `harden kv put`, or pass --allow-unsealed",
                        opened.version
                    )));
                }
                opened.value
            }
            Reference::Shared(id) => {
                let shared = session.vault.read_shared(caller, *id).await?;
                let b64 = Zeroizing::new(shared.value_b64);
                Zeroizing::new(STANDARD.decode(b64.as_bytes()).map_err(|e| Fail::internal(e.to_string()))?)
            }
        };
        values.insert(reference, value);
    }
    Ok(values)
}

/// `NAME=value` lines of a dotenv file: `#` comments, blank lines, an optional `export `, values
/// optionally in single or double quotes.
pub fn parse_env_file(text: &str, path: &Path) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(Fail::usage(format!("{}:{}: expected NAME=value", path.display(), n + 1)));
        };
        let name = name.trim();
        check_var_name(name).map_err(|m| Fail::usage(format!("{}:{}: {m}", path.display(), n + 1)))?;
        let value = value.trim();
        let value = match (value.chars().next(), value.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if value.len() >= 2 && e == q => &value[1..value.len() - 1],
            _ => value,
        };
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

fn check_var_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid environment variable name"))
    }
}

/// Runs the command with the variables set; answers its exit code (128 + the signal that ended it).
pub async fn run(session: &Session, args: RunArgs) -> Result<u8> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for path in &args.env_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| Fail::usage(format!("cannot read {}: {e}", path.display())))?,
        );
        vars.extend(parse_env_file(&text, path)?);
    }
    for pair in &args.env {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| Fail::usage(format!("--env {pair}: expected NAME=VALUE")))?;
        check_var_name(name).map_err(Fail::usage)?;
        vars.push((name.to_owned(), value.to_owned()));
    }
    let parsed: Vec<(String, Option<Reference>, String)> = vars
        .into_iter()
        .map(|(name, value)| Reference::parse(&value).map(|r| (name, r, value)))
        .collect::<Result<_>>()?;
    let references: Vec<Reference> = parsed.iter().filter_map(|(_, r, _)| r.clone()).collect();
    let values = if references.is_empty() {
        BTreeMap::new()
    } else {
        let caller = session.caller().await?;
        resolve(session, &caller, references, args.allow_unsealed).await?
    };

    let (program, rest) =
        args.command.split_first().ok_or_else(|| Fail::usage("no command to run: harden run -- CMD ARGS…"))?;
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    if args.no_inherit_env {
        command.env_clear();
    }
    // The secrets and the key that open everything are never passed on.
    for name in ["HARDEN_USER_SECRET", "HARDEN_NEW_USER_SECRET", "HARDEN_API_KEY"] {
        command.env_remove(name);
    }
    for (name, reference, plain) in &parsed {
        let value: OsString = match reference {
            Some(r) => {
                let bytes = &values[r];
                if bytes.contains(&0) {
                    return Err(Fail::usage(format!(
                        "{name}: the value has a NUL byte and cannot be an environment variable"
                    )));
                }
                OsString::from_vec(bytes.to_vec())
            }
            None => OsString::from(plain),
        };
        command.env(name, value);
    }
    // Listening before the child starts: a signal sent the moment it runs is passed on too.
    let signals = Signals::listen()?;
    let mut child =
        command.spawn().map_err(|e| Fail::usage(format!("cannot start {}: {e}", program.to_string_lossy())))?;
    // The child has its copy; ours go now (the command's own copy in `command` goes with it).
    drop(values);
    drop(command);
    let pid = child.id().map(|p| p as i32);
    signals.wait_forwarding(&mut child, pid).await
}

/// The signals a supervisor or a terminal sends, caught to be passed on to the child.
struct Signals {
    rx: tokio::sync::mpsc::UnboundedReceiver<i32>,
}

impl Signals {
    fn listen() -> Result<Self> {
        use std::io::IsTerminal;
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            (SignalKind::terminate(), libc::SIGTERM),
            (SignalKind::interrupt(), libc::SIGINT),
            (SignalKind::hangup(), libc::SIGHUP),
            (SignalKind::quit(), libc::SIGQUIT),
            (SignalKind::user_defined1(), libc::SIGUSR1),
            (SignalKind::user_defined2(), libc::SIGUSR2),
        ];
        // On a terminal, Ctrl-C and Ctrl-\ reach the whole foreground group, the command too:
        // passing them on as well would deliver them twice.
        let on_terminal = std::io::stdin().is_terminal();
        let mut streams = Vec::new();
        for (kind, number) in kinds {
            if on_terminal && (number == libc::SIGINT || number == libc::SIGQUIT) {
                // Still caught, so harden itself waits for the command instead of dying first.
                let mut stream = signal(kind)?;
                tokio::spawn(async move { while stream.recv().await.is_some() {} });
                continue;
            }
            streams.push((signal(kind)?, number));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for (mut stream, number) in streams {
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(number).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self { rx })
    }

    /// Waits for the child, passing the signals on; answers its exit code (128 + a signal's number).
    async fn wait_forwarding(mut self, child: &mut tokio::process::Child, pid: Option<i32>) -> Result<u8> {
        let rx = &mut self.rx;
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status?;
                    use std::os::unix::process::ExitStatusExt;
                    return Ok(match (status.code(), status.signal()) {
                        (Some(code), _) => code as u8,
                        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
                        _ => 1,
                    });
                }
                Some(number) = rx.recv() => {
                    if let Some(pid) = pid {
                        // SAFETY: kill takes plain integers; the pid is our own child's.
                        unsafe { libc::kill(pid, number) };
                    }
                }
            }
        }
    }
}

/// The references in a template: `{{ harden://… }}` (spaces inside the braces optional).
fn template_parts(template: &str) -> Result<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        if inner.starts_with(SCHEME) {
            let reference = Reference::parse(inner)?.expect("starts with the scheme");
            parts.push(Part::Text(&rest[..start]));
            parts.push(Part::Ref(reference));
        } else {
            parts.push(Part::Text(&rest[..start + 2 + end + 2]));
        }
        rest = &after[end + 2..];
    }
    parts.push(Part::Text(rest));
    Ok(parts)
}

enum Part<'t> {
    Text(&'t str),
    Ref(Reference),
}

/// Renders `input`; writes it to `output` (0600, atomically) or standard output.
pub async fn inject(session: &Session, input: &Path, output: Option<&Path>, allow_unsealed: bool) -> Result<()> {
    let template =
        std::fs::read_to_string(input).map_err(|e| Fail::usage(format!("cannot read {}: {e}", input.display())))?;
    let parts = template_parts(&template)?;
    let references: Vec<Reference> =
        parts.iter().filter_map(|p| if let Part::Ref(r) = p { Some(r.clone()) } else { None }).collect();
    let values = if references.is_empty() {
        BTreeMap::new()
    } else {
        let caller = session.caller().await?;
        resolve(session, &caller, references, allow_unsealed).await?
    };
    let mut rendered = Zeroizing::new(Vec::with_capacity(template.len()));
    for part in &parts {
        match part {
            Part::Text(text) => rendered.extend_from_slice(text.as_bytes()),
            Part::Ref(r) => rendered.extend_from_slice(&values[r]),
        }
    }
    match output {
        Some(path) => crate::config::write_private(path, &rendered),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&rendered)?;
            out.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        assert_eq!(
            Reference::parse("harden://kv/db-url").unwrap(),
            Some(Reference::Kv { name: "db-url".into(), version: None })
        );
        assert_eq!(
            Reference::parse("harden://kv/prod/db?version=3").unwrap(),
            Some(Reference::Kv { name: "prod/db".into(), version: Some(3) })
        );
        let id = Uuid::new_v4();
        assert_eq!(Reference::parse(&format!("harden://shared/{id}")).unwrap(), Some(Reference::Shared(id)));
        assert_eq!(Reference::parse("plain value").unwrap(), None);
        for bad in ["harden://kv/a?v=1", "harden://shared/x", "harden://files/x", "harden://kv/a?version=x"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_parse() {
        let text = "# comment\n\nexport A=1\nB = \"two words\"\nC='harden://kv/x'\nD=\n";
        let pairs = parse_env_file(text, Path::new(".env")).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "harden://kv/x".into()),
                ("D".into(), "".into())
            ]
        );
        assert!(parse_env_file("no equals sign", Path::new(".env")).is_err());
        assert!(parse_env_file("1A=x", Path::new(".env")).is_err());
    }

    #[test]
    fn templates_keep_what_is_not_a_reference() {
        let parts = template_parts("a: {{ harden://kv/x }}\nb: {{other}}\nc: {{harden://kv/y?version=2}}").unwrap();
        let refs: Vec<_> = parts.iter().filter(|p| matches!(p, Part::Ref(_))).count().to_string().into_bytes();
        assert_eq!(refs, b"2");
        let text: String = parts.iter().filter_map(|p| if let Part::Text(t) = p { Some(*t) } else { None }).collect();
        assert_eq!(text, "a: \nb: {{other}}\nc: ");
    }
}
