//! The processes of a fault run, all its own: a PostgreSQL cluster (`initdb` into a scratch
//! directory, another port), a nats-server with JetStream (its own store and port), and harden
//! pointed at them. The machine's shared PostgreSQL and NATS, which other people's tests use, are
//! never touched. Everything is stopped and removed on drop.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

/// A scratch directory, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(base: &Path, name: &str) -> anyhow::Result<Self> {
        let dir = base.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs a command to its end; fails with its output if it fails.
fn run(mut command: Command) -> anyhow::Result<()> {
    let out = command.output().with_context(|| format!("run {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A PostgreSQL cluster of this run's own.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_root: bool,
}

impl Postgres {
    pub fn start(scratch: &Path) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL server binaries under /usr/lib/postgresql")?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .context("initdb")?;
        let dir = scratch.join("postgres");
        std::fs::create_dir_all(&dir)?;
        let as_root = is_root();
        if as_root {
            // initdb refuses to run as root; the cluster belongs to the postgres user.
            run({
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&dir);
                c
            })?;
        }
        let pg = Self { dir, bin, port: free_port()?, as_root };
        let data = pg.dir.join("data");
        run(pg.tool("initdb", &["-D", data.to_str().context("path")?, "-A", "trust", "-U", "postgres"]))?;
        pg.start_again()?;
        Ok(pg)
    }

    fn tool(&self, name: &str, args: &[&str]) -> Command {
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        command.args(args);
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        let mut all = vec!["-D", data.to_str().context("path")?];
        all.extend_from_slice(args);
        run(self.tool("pg_ctl", &all))
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the cluster (again) and waits until it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("log");
        self.pg_ctl(&["-o", &opts, "-l", log.to_str().context("path")?, "-w", "start"])
    }

    /// A clean, fast shutdown: sessions are ended (their transactions rolled back), then the server
    /// checkpoints and stops. Waits until it is down.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "fast", "-w", "stop"])
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }
}

/// A nats-server with JetStream of this run's own.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
}

impl Nats {
    pub fn start(scratch: &Path) -> anyhow::Result<Self> {
        let store = scratch.join("nats");
        std::fs::create_dir_all(&store)?;
        let mut nats = Self { child: None, port: free_port()?, store, log: scratch.join("nats.log") };
        nats.start_again()?;
        Ok(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "NATS is running");
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start nats-server")?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20)).context("NATS did not come up")
    }

    /// SIGTERM (nats-server flushes its store and leaves), then waits for the process to end.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("NATS is not running")?;
        run({
            let mut c = Command::new("kill");
            c.args(["-TERM", &child.id().to_string()]);
            c
        })?;
        child.wait()?;
        Ok(())
    }
}

impl Nats {
    /// SIGKILL: no flush of the store.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("NATS is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// harden (`harden serve`, both listeners) as a child process.
pub struct Harden {
    bin: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    pub backend_port: u16,
    pub proxy_port: u16,
}

impl Harden {
    /// `env`: the `HARDEN_*` settings beyond the listeners' addresses.
    pub fn start(bin: &Path, scratch: &Path, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let (backend_port, proxy_port) = (free_port()?, free_port()?);
        let mut env = env;
        env.push(("HARDEN_BACKEND_ADDR".into(), format!("127.0.0.1:{backend_port}")));
        env.push(("HARDEN_PROXY_ADDR".into(), format!("127.0.0.1:{proxy_port}")));
        env.push(("HARDEN_DATA_DIR".into(), scratch.join("harden-data").display().to_string()));
        let mut harden =
            Self { bin: bin.to_owned(), env, child: None, log: scratch.join("harden.log"), backend_port, proxy_port };
        harden.start_again()?;
        Ok(harden)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.env.iter().find(|(k, _)| k == "HARDEN_DATA_DIR").expect("set in start").1)
    }

    /// Starts harden and waits until both listeners answer `/health`.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "harden is running");
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        for port in [self.backend_port, self.proxy_port] {
            while !health(port) {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    bail!("harden exited with {status}; see {}", self.log.display());
                }
                ensure!(started.elapsed() < Duration::from_secs(60), "harden did not answer /health within 60 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush, requests in flight cut.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("harden is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in KiB.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field =
            |name: &str| status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok();
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Harden {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(started.elapsed() < within, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `GET /health` answers 200, by hand over a plain socket (no runtime needed).
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    if socket.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 12];
    socket.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.1 200")
}
