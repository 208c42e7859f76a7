//! The unlock agent: a background process, like ssh-agent, that holds one user's unlocked private
//! keys in memory for a while so that a run of commands pays Argon2id once.
//!
//! `harden unlock` derives the keys (the one Argon2id run), starts the agent if none answers on the
//! socket, and hands it the keys; every later command asks the agent first. The agent listens on a
//! Unix socket created with mode 0600 (in a directory of mode 0700), answers only peers of its own
//! user id (checked with `SO_PEERCRED`, so not even a root process of another account's session is
//! served by mistake), is not dumpable (no core file, no `ptrace` by other processes of the user),
//! logs nothing, and exits, dropping (zeroizing) the keys, when the time runs out, on `harden lock`,
//! or after a minute without keys. One request and one answer per connection, as JSON lines.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_client::UnlockedKeys;
use harden_domain::crypto::PrivateKeys;

use crate::fail::{Fail, Result};

/// How long an agent started without keys waits for them.
const EMPTY_FOR: Duration = Duration::from_secs(60);
/// The longest an agent holds keys, whatever it is asked.
const MAX_HOLD_SECS: u64 = 24 * 3600;
/// The largest request an agent reads.
const MAX_REQUEST: u64 = 16 * 1024;

/// The agent's socket: `HARDEN_AGENT_SOCK`, else `$XDG_RUNTIME_DIR/harden/agent.sock`, else
/// `agent.sock` in the config directory.
pub fn socket_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HARDEN_AGENT_SOCK").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(dir).join("harden").join("agent.sock"));
    }
    Ok(crate::config::dir()?.join("agent.sock"))
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Request {
    /// Hold these keys (replacing any) for `for_secs`.
    #[serde(rename_all = "camelCase")]
    Load {
        server: String,
        user: Uuid,
        x25519_b64: String,
        mlkem_b64: String,
        seal_proof_b64: String,
        for_secs: u64,
    },
    /// The keys of `user` on `server`, if held.
    Keys {
        server: String,
        user: Uuid,
    },
    Status,
    Lock,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Answer {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keys {
    x25519_b64: String,
    mlkem_b64: String,
    seal_proof_b64: String,
}

impl Drop for Keys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.x25519_b64.zeroize();
        self.mlkem_b64.zeroize();
        self.seal_proof_b64.zeroize();
    }
}

/// What `harden unlock --status` shows.
#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub server: Option<String>,
    pub user: Option<Uuid>,
    /// Seconds until the keys are dropped (`None`: no keys held).
    pub expires_in_secs: Option<u64>,
    /// Times keys were handed to the agent (each cost one Argon2id run in `harden unlock`).
    pub unlocks: u64,
    /// Commands the agent served keys to.
    pub served: u64,
}

struct Held {
    server: String,
    user: Uuid,
    keys: Arc<UnlockedKeys>,
    until: Instant,
}

struct State {
    held: Option<Held>,
    unlocks: u64,
    served: u64,
    started: Instant,
}

impl State {
    /// When the agent stops: the keys' time, or a minute after start without keys.
    fn deadline(&self) -> Instant {
        match &self.held {
            Some(held) => held.until,
            None => self.started + EMPTY_FOR,
        }
    }
}

fn encode_keys(keys: &UnlockedKeys) -> Keys {
    let (x, m) = keys.keys.seeds();
    Keys {
        x25519_b64: STANDARD.encode(x.as_ref()),
        mlkem_b64: STANDARD.encode(m.as_ref()),
        seal_proof_b64: STANDARD.encode(keys.seal_proof.as_ref()),
    }
}

fn decode_keys(x25519_b64: &str, mlkem_b64: &str, seal_proof_b64: &str) -> Option<UnlockedKeys> {
    let x = Zeroizing::new(STANDARD.decode(x25519_b64).ok()?);
    let m = Zeroizing::new(STANDARD.decode(mlkem_b64).ok()?);
    let p = Zeroizing::new(STANDARD.decode(seal_proof_b64).ok()?);
    let x: [u8; 32] = x.as_slice().try_into().ok()?;
    let m: [u8; 64] = m.as_slice().try_into().ok()?;
    let p: [u8; 32] = p.as_slice().try_into().ok()?;
    Some(UnlockedKeys { keys: PrivateKeys::from_seeds(x, m), seal_proof: Zeroizing::new(p) })
}

/// Not dumpable: no core file with the keys in it, and no `ptrace` or `/proc/<pid>/mem` reads by
/// other processes of the same user.
pub fn harden_process() {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Runs the agent on `socket` until its keys' time runs out (`harden agent`, started by `harden unlock`).
pub async fn serve(socket: &Path) -> Result<()> {
    harden_process();
    let listener = bind(socket).await?;
    // The starter waits for this line: the socket is there and private.
    println!("ready");
    // The starter sees EOF: stdout becomes /dev/null (not a closed fd a connection could reuse).
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own stdout of a descriptor we hold open for the call.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    let state = Arc::new(tokio::sync::Mutex::new(State { held: None, unlocks: 0, served: 0, started: Instant::now() }));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    loop {
        let deadline = state.lock().await.deadline();
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                let stop = stop_tx.clone();
                tokio::spawn(async move {
                    // A peer that stalls gets nothing and holds nothing for long.
                    let _ = tokio::time::timeout(Duration::from_secs(10), connection(stream, state, stop)).await;
                });
            }
            // Checked at least every second: keys loaded a moment ago may have a nearer deadline.
            _ = tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_secs(1)).into()) => {
                if state.lock().await.deadline() <= Instant::now() { break }
            }
            _ = stop_rx.changed() => break,
        }
    }
    // The keys zeroize as they drop.
    state.lock().await.held = None;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

async fn bind(socket: &Path) -> Result<UnixListener> {
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Fail::usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).await.is_ok() {
            return Err(Fail::usage(format!("an agent already listens on {}", socket.display())));
        }
        // A socket left by an agent that died; anything else there is not ours to remove.
        use std::os::unix::fs::FileTypeExt;
        if !std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
            return Err(Fail::usage(format!("{} exists and is not a socket", socket.display())));
        }
        let _ = std::fs::remove_file(socket);
    }
    // Created 0600 from the start: no moment in which another user could connect.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(socket);
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| Fail::usage(format!("cannot listen on {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn connection(
    stream: UnixStream,
    state: Arc<tokio::sync::Mutex<State>>,
    stop: tokio::sync::watch::Sender<bool>,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let answer = if peer.uid() != own_uid() {
        Answer { ok: false, error: Some("this agent serves only its own user".into()), ..Answer::default() }
    } else {
        let mut line = Zeroizing::new(String::new());
        BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line).await?;
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(request, &state, &stop).await,
            Err(_) => Answer { ok: false, error: Some("unreadable request".into()), ..Answer::default() },
        }
    };
    let mut out = Zeroizing::new(serde_json::to_vec(&answer).expect("answers serialize"));
    out.push(b'\n');
    drop(answer);
    write.write_all(&out).await?;
    write.shutdown().await
}

async fn handle(
    request: Request,
    state: &tokio::sync::Mutex<State>,
    stop: &tokio::sync::watch::Sender<bool>,
) -> Answer {
    let mut state = state.lock().await;
    let now = Instant::now();
    if state.held.as_ref().is_some_and(|h| h.until <= now) {
        state.held = None;
    }
    match request {
        Request::Load { server, user, x25519_b64, mlkem_b64, seal_proof_b64, for_secs } => {
            let (x, m, p) = (Zeroizing::new(x25519_b64), Zeroizing::new(mlkem_b64), Zeroizing::new(seal_proof_b64));
            let Some(keys) = decode_keys(&x, &m, &p) else {
                return Answer { ok: false, error: Some("malformed keys".into()), ..Answer::default() };
            };
            let until = now + Duration::from_secs(for_secs.min(MAX_HOLD_SECS));
            state.held = Some(Held { server, user, keys: Arc::new(keys), until });
            state.unlocks += 1;
            Answer { ok: true, ..Answer::default() }
        }
        Request::Keys { server, user } => match &state.held {
            Some(held) if held.server == server && held.user == user => {
                let keys = encode_keys(&held.keys);
                state.served += 1;
                Answer { ok: true, keys: Some(keys), ..Answer::default() }
            }
            Some(_) => {
                Answer { ok: false, error: Some("the agent holds another user's keys".into()), ..Answer::default() }
            }
            None => Answer { ok: false, error: Some("the agent holds no keys".into()), ..Answer::default() },
        },
        Request::Status => Answer { ok: true, status: Some(status_of(&state, now)), ..Answer::default() },
        Request::Lock => {
            state.held = None;
            let _ = stop.send(true);
            Answer { ok: true, ..Answer::default() }
        }
    }
}

fn status_of(state: &State, now: Instant) -> Status {
    Status {
        server: state.held.as_ref().map(|h| h.server.clone()),
        user: state.held.as_ref().map(|h| h.user),
        expires_in_secs: state.held.as_ref().map(|h| h.until.saturating_duration_since(now).as_secs()),
        unlocks: state.unlocks,
        served: state.served,
    }
}

/// One request to the agent on `socket`; `None` when no agent answers there.
async fn ask(socket: &Path, request: &Request) -> Option<Answer> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await.ok()?;
        // Keys go only to an agent of this user: a socket another user made in a shared directory
        // is not spoken to.
        if stream.peer_cred().ok()?.uid() != own_uid() {
            return None;
        }
        let mut line = Zeroizing::new(serde_json::to_vec(request).ok()?);
        line.push(b'\n');
        stream.write_all(&line).await.ok()?;
        let mut answer = Zeroizing::new(Vec::new());
        stream.read_to_end(&mut answer).await.ok()?;
        serde_json::from_slice::<Answer>(&answer).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.ok().flatten()
}

/// The keys the agent holds for `user` on `server`, if it holds them.
pub async fn keys(socket: &Path, server: &str, user: Uuid) -> Option<UnlockedKeys> {
    let answer = ask(socket, &Request::Keys { server: server.to_owned(), user }).await?;
    let keys = answer.keys?;
    decode_keys(&keys.x25519_b64, &keys.mlkem_b64, &keys.seal_proof_b64)
}

pub async fn status(socket: &Path) -> Option<Status> {
    ask(socket, &Request::Status).await?.status
}

/// Stops the agent (its keys zeroize as they go); false when none was running.
pub async fn lock(socket: &Path) -> bool {
    ask(socket, &Request::Lock).await.is_some_and(|a| a.ok)
}

/// Hands `keys` to the agent on `socket`, starting one (this program, `harden agent`) if none answers.
pub async fn load(socket: &Path, server: &str, user: Uuid, keys: &UnlockedKeys, hold: Duration) -> Result<()> {
    if status(socket).await.is_none() {
        start(socket).await?;
    }
    let encoded = encode_keys(keys);
    let request = Request::Load {
        server: server.to_owned(),
        user,
        x25519_b64: encoded.x25519_b64.clone(),
        mlkem_b64: encoded.mlkem_b64.clone(),
        seal_proof_b64: encoded.seal_proof_b64.clone(),
        for_secs: hold.as_secs().max(1),
    };
    let answer = ask(socket, &request).await;
    if let Request::Load { x25519_b64, mlkem_b64, seal_proof_b64, .. } = request {
        drop((Zeroizing::new(x25519_b64), Zeroizing::new(mlkem_b64), Zeroizing::new(seal_proof_b64)));
    }
    match answer {
        Some(Answer { ok: true, .. }) => Ok(()),
        Some(Answer { error, .. }) => {
            Err(Fail::refused(format!("the agent refused the keys: {}", error.unwrap_or_default())))
        }
        None => Err(Fail::refused(format!("the agent on {} does not answer", socket.display()))),
    }
}

/// Starts `harden agent --socket SOCKET` in its own process group, detached from the terminal,
/// and waits for it to say it listens.
async fn start(socket: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| Fail::internal(format!("cannot find this program: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("agent")
        .arg("--socket")
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        // Its own process group: a Ctrl-C at the terminal does not stop it.
        .process_group(0);
    // The agent needs nothing from the environment and never sees the secret or the API key.
    command.env_clear();
    let mut child = command.spawn().map_err(|e| Fail::internal(format!("cannot start the agent: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), ready).await;
    match line {
        Ok(Ok(Ok(line))) if line.trim() == "ready" => {
            // Reaped by nobody: the agent outlives this command (init adopts it).
            std::mem::forget(child);
            Ok(())
        }
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Fail::usage(format!("the agent did not start on {}", socket.display())))
        }
    }
}
