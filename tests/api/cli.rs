//! The command-line client, run as its users run it: the `harden` binary against a real
//! `harden serve` (PostgreSQL, NATS, S3), with its config in a home of its own, no terminal unless
//! a test gives it one (tmux), and the user secret only in the environment or typed at a prompt.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::files::{self, with_secret, SECRET};
use crate::helpers::{expect_json, spawn_app, TestApp};
use crate::hostile::{self, OWNER_SECRET, RECIPIENT_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_harden");

/// One user's terminal: a home with the config and the agent's socket, the server, the API key
/// and (when given) the user secret in the environment.
struct Cli {
    home: TempDir,
    server: String,
    api_key: String,
    secret: Option<String>,
}

struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Cli {
    fn new(app: &TestApp, api_key: &str, secret: Option<&str>) -> Self {
        Self {
            home: TempDir::new().unwrap(),
            server: app.proxy.clone(),
            api_key: api_key.into(),
            secret: secret.map(Into::into),
        }
    }

    fn socket(&self) -> PathBuf {
        self.home.path().join("run").join("agent.sock")
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        let mut envs = vec![
            ("XDG_CONFIG_HOME", self.home.path().join("config").display().to_string()),
            ("HARDEN_SERVER", self.server.clone()),
            ("HARDEN_API_KEY", self.api_key.clone()),
            ("HARDEN_AGENT_SOCK", self.socket().display().to_string()),
            // The floor, as the test server's own settings.
            ("HARDEN_ARGON2_M_KIB", (19 * 1024).to_string()),
            ("HARDEN_ARGON2_T", "2".into()),
        ];
        if let Some(secret) = &self.secret {
            envs.push(("HARDEN_USER_SECRET", secret.clone()));
        }
        envs
    }

    /// `harden ARGS` in a session of its own: no controlling terminal, so a prompt fails at once.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("setsid");
        command.arg(BIN).args(args);
        command.env_remove("XDG_RUNTIME_DIR").env_remove("HARDEN_USER_SECRET").env_remove("HARDEN_NEW_USER_SECRET");
        command.envs(self.envs()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    async fn run_with(&self, args: &[&str], stdin: Option<&[u8]>) -> Ran {
        let mut command = self.command(args);
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input).await.unwrap();
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the CLI finished")
            .unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, None).await
    }

    /// Succeeds, or the test fails with what it said.
    async fn ok(&self, args: &[&str]) -> Ran {
        let ran = self.run(args).await;
        assert_eq!(ran.code, 0, "harden {args:?}: {} {}", ran.stderr, ran.text());
        ran
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_slice(&self.ok(&all).await.stdout).unwrap()
    }

    /// Fails with `code`; answers its message.
    async fn fails(&self, args: &[&str], code: i32) -> String {
        let ran = self.run(args).await;
        assert_eq!(ran.code, code, "harden {args:?}: {} {}", ran.stderr, ran.text());
        assert!(
            ran.stderr.starts_with("harden: ") && ran.stderr.ends_with('\n') && ran.stderr.matches('\n').count() == 1,
            "exactly one line: {:?}",
            ran.stderr
        );
        ran.stderr
    }

    fn without_secret(&self) -> Self {
        Self {
            home: tempfile::TempDir::new().unwrap(),
            server: self.server.clone(),
            api_key: self.api_key.clone(),
            secret: None,
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn proxy_value(app: &TestApp, key: &str, secret: &str, path: &str) -> Vec<u8> {
    let res = app.proxy(Method::GET, path, &[("X-Api-Key", key), ("X-User-Secret", secret)], None).await;
    let body = expect_json(res, StatusCode::OK).await;
    let field = if body.get("contentB64").is_some() { "contentB64" } else { "valueB64" };
    STANDARD.decode(body[field].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn values_files_and_shares_written_with_the_cli_are_read_through_the_proxy_and_the_reverse() {
    let app = files::app().await;
    let team = files::file_team(&app, "starter").await;
    let owner = Cli::new(&app, &team.owner, Some(SECRET));
    let member = Cli::new(&app, &team.member, Some(SECRET));

    // A value from standard input, read back through the Proxy, sealed by its owner.
    let ran = owner.run_with(&["kv", "put", "db-url", "--stdin"], Some(b"postgres://from-the-cli")).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(proxy_value(&app, &team.owner, SECRET, "/v1/kv/db-url").await, b"postgres://from-the-cli");
    // From a file, as a second version; the raw bytes come back on stdout.
    let value_file = owner.home.path().join("token.bin");
    std::fs::write(&value_file, [0u8, 159, 146, 150, b'\n']).unwrap();
    owner.ok(&["kv", "put", "db-url", "--file", value_file.to_str().unwrap()]).await;
    assert_eq!(owner.ok(&["kv", "get", "db-url"]).await.stdout, [0u8, 159, 146, 150, b'\n']);
    let old = owner.json(&["kv", "get", "db-url", "--version", "1", "--json"]).await;
    assert_eq!(
        (old["value"].as_str(), old["version"].as_i64(), old["ownerSealed"].as_bool()),
        (Some("postgres://from-the-cli"), Some(1), Some(true))
    );

    // A value the Proxy wrote opens in the CLI.
    let body = json!({ "valueB64": STANDARD.encode(b"from the proxy") });
    expect_json(with_secret(&app, Method::PUT, "/v1/kv/api-token", &team.owner, Some(body)).await, StatusCode::CREATED)
        .await;
    assert_eq!(owner.ok(&["kv", "get", "api-token"]).await.stdout, b"from the proxy");

    // Listings, as text and as JSON.
    let listed = owner.json(&["kv", "ls"]).await;
    let mut names: Vec<_> = listed.as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["api-token", "db-url"]);
    let prefixed = owner.json(&["kv", "ls", "--prefix", "db"]).await;
    assert_eq!(prefixed.as_array().unwrap().len(), 1);
    assert!(owner.ok(&["kv", "ls"]).await.text().starts_with("NAME"));
    let history = owner.json(&["kv", "history", "db-url"]).await;
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);

    // A share made in the CLI (the recipient by name) opens for its recipient through the Proxy.
    let users = owner.json(&["users", "ls"]).await;
    let member_name = users.as_array().unwrap().iter().find(|u| u["id"] == json!(team.member_id)).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let fingerprint = member.json(&["keys", "fingerprint"]).await["fingerprint"].as_str().unwrap().to_owned();
    let shown = owner.ok(&["keys", "fingerprint", &member_name]).await.text();
    assert_eq!(shown.trim(), fingerprint, "both sides show the same fingerprint to compare");
    let granted = owner.json(&["kv", "share", "db-url", "--to", &member_name, "--alias", "the database"]).await;
    let share_id = granted["shareId"].as_str().unwrap().to_owned();
    let shared = proxy_value(&app, &team.member, SECRET, &format!("/v1/kv/shared/{share_id}")).await;
    assert_eq!(shared, [0u8, 159, 146, 150, b'\n']);
    assert_eq!(owner.json(&["kv", "shares", "db-url"]).await.as_array().unwrap().len(), 1);
    // And the reverse: a share the Proxy made opens in the recipient's CLI, listed in the inbox.
    let grant = json!({ "recipientUserId": team.member_id, "permission": "read", "alias": "token" });
    let res = with_secret(&app, Method::POST, "/v1/kv/api-token/shares", &team.owner, Some(grant)).await;
    let proxy_share = expect_json(res, StatusCode::CREATED).await["shareId"].as_str().unwrap().to_owned();
    assert_eq!(member.ok(&["kv", "get", "--shared", &proxy_share]).await.stdout, b"from the proxy");
    let inbox = member.json(&["kv", "shared"]).await;
    let aliases: Vec<_> = inbox.as_array().unwrap().iter().map(|i| i["alias"].as_str().unwrap().to_owned()).collect();
    assert_eq!(aliases.len(), 2);
    assert!(aliases.contains(&"the database".to_owned()) && aliases.contains(&"token".to_owned()));
    // A revocation in the CLI refuses the recipient and gives the value a new key.
    let revoked = owner.json(&["kv", "revoke", "db-url", &share_id]).await;
    assert_eq!(revoked["rotated"], true, "{revoked}");
    let res = app
        .proxy(
            Method::GET,
            &format!("/v1/kv/shared/{share_id}"),
            &[("X-Api-Key", &team.member), ("X-User-Secret", SECRET)],
            None,
        )
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(owner.ok(&["kv", "get", "db-url"]).await.stdout, [0u8, 159, 146, 150, b'\n']);

    // A file uploaded with the CLI downloads through the Proxy, and the reverse.
    let path = owner.home.path().join("report.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let uploaded = owner.json(&["files", "put", path.to_str().unwrap(), "--name", "q4/report.bin"]).await;
    let file_id = uploaded["id"].as_str().unwrap().to_owned();
    assert_eq!(proxy_value(&app, &team.owner, SECRET, &format!("/v1/files/{file_id}")).await, content);
    let res = files::upload(&app, &team.owner, "from-proxy.txt", b"a file the proxy sealed").await;
    let proxy_file = expect_json(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let out = owner.home.path().join("downloaded.txt");
    owner.ok(&["files", "get", &proxy_file, "-o", out.to_str().unwrap()]).await;
    assert_eq!(std::fs::read(&out).unwrap(), b"a file the proxy sealed");
    assert_eq!(mode(&out), 0o600);
    let listed = owner.json(&["files", "ls"]).await;
    let names: Vec<_> = listed.as_array().unwrap().iter().map(|f| f["fileName"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"q4/report.bin".to_owned()));
    assert!(listed.as_array().unwrap().iter().all(|f| f["ownerSealed"] == true), "both sealed by the owner: {listed}");
    // A file share from the CLI opens for the recipient through the Proxy, and in their CLI.
    let share = owner.json(&["files", "share", &file_id, "--to", &team.member_id.to_string()]).await;
    let file_share = share["shareId"].as_str().unwrap().to_owned();
    assert_eq!(proxy_value(&app, &team.member, SECRET, &format!("/v1/files/shared/{file_share}")).await, content);
    let got = member.home.path().join("shared.bin");
    member.ok(&["files", "get", "--shared", &file_share, "-o", got.to_str().unwrap()]).await;
    assert_eq!(std::fs::read(&got).unwrap(), content);
    assert_eq!(member.json(&["files", "shared"]).await[0]["fileName"], "q4/report.bin");
    owner.ok(&["files", "revoke", &file_id, &file_share]).await;
    member.fails(&["files", "get", "--shared", &file_share, "-o", got.to_str().unwrap()], 1).await;
    assert_eq!(std::fs::read(&got).unwrap(), content, "a refused download leaves the old file alone");
    // And the reverse: a file the Proxy uploaded and shared opens in the recipient's CLI, byte for byte.
    let proxy_content: Vec<u8> = (0..200_003u32).map(|i| (i * 17 % 256) as u8).collect();
    let res = files::upload(&app, &team.owner, "from-proxy.bin", &proxy_content).await;
    let proxy_binary = expect_json(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let grant = json!({ "recipientUserId": team.member_id, "permission": "read" });
    let res =
        with_secret(&app, Method::POST, &format!("/v1/files/{proxy_binary}/shares"), &team.owner, Some(grant)).await;
    let proxy_file_share = expect_json(res, StatusCode::CREATED).await["shareId"].as_str().unwrap().to_owned();
    let inbox = member.json(&["files", "shared"]).await;
    assert!(inbox.as_array().unwrap().iter().any(|i| i["shareId"] == proxy_file_share.as_str()), "{inbox}");
    let got = member.home.path().join("from-proxy.bin");
    member.ok(&["files", "get", "--shared", &proxy_file_share, "-o", got.to_str().unwrap()]).await;
    assert_eq!(std::fs::read(&got).unwrap(), proxy_content);
    assert_eq!(mode(&got), 0o600);
    assert_eq!(member.ok(&["files", "get", "--shared", &proxy_file_share]).await.stdout, proxy_content, "on stdout");
    owner.ok(&["files", "rm", &proxy_file]).await;
    owner.ok(&["kv", "rm", "api-token"]).await;
    let msg = owner.fails(&["kv", "get", "api-token"], 1).await;
    assert!(msg.contains("key not found"), "the server's error as it is: {msg}");
}

#[tokio::test]
async fn login_whoami_exit_codes_and_completions() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let cli = Cli::new(&app, &fx.admin_key, Some(OWNER_SECRET));
    // Login takes the key from HARDEN_API_KEY (never argv) and stores it 0600.
    let mut login = cli.command(&["login", "--server", &app.proxy]);
    login.env_remove("HARDEN_SERVER");
    let out = login.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = cli.home.path().join("config/harden/config.toml");
    assert_eq!(mode(&config), 0o600);
    assert!(std::fs::read_to_string(&config).unwrap().contains(&fx.admin_key));
    // The stored profile is used without the environment.
    let mut whoami = cli.command(&["whoami", "--output", "json"]);
    whoami.env_remove("HARDEN_SERVER").env_remove("HARDEN_API_KEY");
    let out = whoami.output().await.unwrap();
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["userId"], json!(fx.admin_id));
    assert_eq!(me["orgId"], json!(fx.org));
    assert!(me["apiKeyFingerprint"].as_str().unwrap().len() == 16);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&fx.admin_key), "the key itself is never printed");
    // HARDEN_API_KEY overrides the stored key: the member's key is the member, whatever the file says.
    let mut as_member = cli.command(&["whoami", "--output", "json"]);
    as_member.env_remove("HARDEN_SERVER").env("HARDEN_API_KEY", &fx.member_key);
    let out = as_member.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["userId"], json!(fx.member_id));
    // HARDEN_SERVER overrides the stored server: with the file pointing nowhere, the file alone cannot
    // reach a server (exit 3), and with HARDEN_SERVER set the command reaches the real one.
    std::fs::write(&config, format!("server = \"http://127.0.0.1:9\"\napi_key = \"{}\"\n", fx.admin_key)).unwrap();
    let mut from_file = cli.command(&["whoami"]);
    from_file.env_remove("HARDEN_SERVER").env_remove("HARDEN_API_KEY");
    assert_eq!(from_file.output().await.unwrap().status.code(), Some(3), "the file's server is used without the env");
    let mut overridden = cli.command(&["whoami", "--output", "json"]);
    overridden.env_remove("HARDEN_API_KEY");
    let out = overridden.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["userId"], json!(fx.admin_id));

    // Keys made on this machine; the Proxy unlocks them with the same secret.
    let mut generate = cli.command(&["keys", "generate"]);
    generate.env("HARDEN_NEW_USER_SECRET", OWNER_SECRET);
    assert!(generate.output().await.unwrap().status.success());
    let body = json!({ "valueB64": STANDARD.encode(b"x") });
    let res = app
        .proxy(Method::PUT, "/v1/kv/k", &[("X-Api-Key", &fx.admin_key), ("X-User-Secret", OWNER_SECRET)], Some(body))
        .await;
    expect_json(res, StatusCode::CREATED).await;

    // Exit codes: 4 wrong secret, 3 no server, 2 usage, 1 refused; a clear line each.
    let wrong = Cli { secret: Some("not the secret".into()), ..Cli::new(&app, &fx.admin_key, None) };
    let msg = wrong.fails(&["kv", "get", "k"], 4).await;
    assert!(msg.contains("invalid user secret"), "{msg}");
    let nowhere = Cli { server: "http://127.0.0.1:9".into(), ..Cli::new(&app, &fx.admin_key, Some(OWNER_SECRET)) };
    nowhere.fails(&["kv", "ls"], 3).await;
    cli.fails(&["kv", "get", "bad\u{7}name"], 2).await;
    // The argument parser's own errors are one line too, with exit code 2.
    let msg = cli.fails(&["kv", "frobnicate"], 2).await;
    assert!(msg.contains("unrecognized subcommand 'frobnicate'"), "{msg}");
    let msg = cli.fails(&["kv", "share", "db-url"], 2).await;
    assert!(msg.contains("--to"), "{msg}");
    cli.fails(&["unlock", "--for", "forever"], 2).await;
    // --help and --version are not errors: standard output, exit code 0.
    let help = cli.ok(&["--help"]).await;
    assert!(help.stderr.is_empty() && help.text().contains("Examples:\n  harden login"), "{}", help.text());
    let version = cli.ok(&["--version"]).await;
    assert!(version.stderr.is_empty() && version.text().starts_with("harden "), "{}", version.text());
    let unknown_key = Cli::new(&app, "hk_not_a_real_key", Some(OWNER_SECRET));
    unknown_key.fails(&["kv", "ls"], 1).await;
    cli.fails(&["kv", "get", "no-such-record"], 1).await;
    // No secret and no terminal: a usage error, not a hang.
    let msg = cli.without_secret().fails(&["kv", "get", "k"], 2).await;
    assert!(msg.contains("HARDEN_USER_SECRET"), "{msg}");

    for shell in ["bash", "zsh", "fish"] {
        let out = cli.ok(&["completion", shell]).await.text();
        assert!(out.contains("harden") && out.contains("inject"), "{shell} completion names the commands");
    }
    // Every command's help has an example.
    for command in [
        &["kv", "get"][..],
        &["kv", "put"],
        &["kv", "share"],
        &["files", "put"],
        &["files", "get"],
        &["run"],
        &["inject"],
        &["login"],
        &["unlock"],
        &["audit", "ls"],
        &["audit", "verify"],
        &["users", "ls"],
        &["keys", "fingerprint"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        assert!(cli.ok(&args).await.text().contains("Example"), "{command:?} --help has an example");
    }
    let _ = cli.ok(&["logout"]).await;
    assert!(!config.exists());
}

#[tokio::test]
async fn run_and_inject_hand_values_to_programs_and_nowhere_else() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let cli = Cli::new(&app, &fx.admin_key, Some(OWNER_SECRET));
    let mut generate = cli.command(&["keys", "generate"]);
    generate.env("HARDEN_NEW_USER_SECRET", OWNER_SECRET);
    assert!(generate.output().await.unwrap().status.success());
    const VALUE: &str = "pg-pass-7f3a9c1e-never-in-argv";
    cli.run_with(&["kv", "put", "db-pass", "--stdin"], Some(b"old-pass")).await;
    assert_eq!(cli.run_with(&["kv", "put", "db-pass", "--stdin"], Some(VALUE.as_bytes())).await.code, 0);
    cli.run_with(&["kv", "put", "api/token", "--stdin"], Some(b"tok-123")).await;
    let dir = cli.home.path();

    // Values from --env and an env file, the exit code passed on, plain values kept.
    let env_file = dir.join("app.env");
    std::fs::write(
        &env_file,
        "# the app\nexport TOKEN=harden://kv/api/token\nOLD='harden://kv/db-pass?version=1'\nPLAIN=hello\n",
    )
    .unwrap();
    let script = format!(
        "printf '%s|%s|%s|%s|%s' \"$DB\" \"$TOKEN\" \"$OLD\" \"$PLAIN\" \"${{HARDEN_USER_SECRET:-unset}}\" > {}/env.out; exit 7",
        dir.display()
    );
    let ran = cli
        .run(&[
            "run",
            "--env",
            "DB=harden://kv/db-pass",
            "--env-file",
            env_file.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .await;
    assert_eq!(ran.code, 7, "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("env.out")).unwrap(), format!("{VALUE}|tok-123|old-pass|hello|unset"));
    // --no-inherit-env: only what harden sets.
    let script = format!("printf '%s|%s' \"${{HOME:-none}}\" \"$DB\" > {}/clean.out", dir.display());
    let ran =
        cli.run(&["run", "--no-inherit-env", "--env", "DB=harden://kv/db-pass", "--", "/bin/sh", "-c", &script]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("clean.out")).unwrap(), format!("none|{VALUE}"));
    // A reference that does not resolve starts nothing.
    let marker = dir.join("started");
    let ran = cli.run(&["run", "--env", "X=harden://kv/missing", "--", "touch", marker.to_str().unwrap()]).await;
    assert_eq!(ran.code, 1);
    assert!(!marker.exists(), "nothing ran");

    // SIGTERM reaches the command, whose exit code comes back; ps shows no value meanwhile.
    let ready = dir.join("ready");
    let script = format!(
        "trap 'echo term > {d}/got-term; exit 143' TERM; echo up > {r}; while :; do sleep 0.1; done",
        d = dir.display(),
        r = ready.display()
    );
    let mut child =
        cli.command(&["run", "--env", "DB=harden://kv/db-pass", "--", "sh", "-c", &script]).spawn().unwrap();
    for _ in 0..200 {
        if ready.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready.exists(), "the command started");
    let ps = tokio::process::Command::new("ps").args(["-eww", "-o", "pid,args"]).output().await.unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("harden://kv/db-pass"), "ps lists the command: {ps}");
    assert!(!ps.contains(VALUE) && !ps.contains(OWNER_SECRET), "ps shows a value or the secret");
    let pid = child.id().unwrap().to_string();
    assert!(tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_eq!(std::fs::read_to_string(dir.join("got-term")).unwrap().trim(), "term");

    // inject renders a template into a 0600 file, atomically; a bad template writes nothing.
    let template = dir.join("config.tpl");
    std::fs::write(&template, "db:\n  password: {{ harden://kv/db-pass }}\n  old: {{harden://kv/db-pass?version=1}}\n  keep: {{ not.a.ref }}\n").unwrap();
    let out = dir.join("config.yaml");
    cli.ok(&["inject", "-i", template.to_str().unwrap(), "-o", out.to_str().unwrap()]).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("db:\n  password: {VALUE}\n  old: old-pass\n  keep: {{{{ not.a.ref }}}}\n")
    );
    assert_eq!(mode(&out), 0o600);
    std::fs::write(&template, "x: {{ harden://kv/missing }}\n").unwrap();
    cli.fails(&["inject", "-i", template.to_str().unwrap(), "-o", out.to_str().unwrap()], 1).await;
    assert!(std::fs::read_to_string(&out).unwrap().contains(VALUE), "the old file is left whole");
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "no temporary file is left");
    // To standard output without -o.
    std::fs::write(&template, "{{ harden://kv/api/token }}").unwrap();
    assert_eq!(cli.ok(&["inject", "-i", template.to_str().unwrap()]).await.stdout, b"tok-123");
}

#[tokio::test]
async fn the_agent_unlocks_once_for_ten_commands_forgets_in_time_and_serves_only_its_user() {
    let app = spawn_app().await;
    let v = hostile::victim(&app).await;
    hostile::owner_put(&app, &v, "db-url", "postgres://agent").await;
    let with_secret = Cli::new(&app, &v.owner, Some(OWNER_SECRET));
    with_secret.ok(&["unlock", "--for", "12s"]).await;
    let socket = with_secret.socket();
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    // Ten commands with no secret anywhere (and no terminal to ask on): the agent's keys serve them.
    let agent_only = Cli { secret: None, ..with_secret };
    for i in 0..10 {
        let ran = agent_only.run(&["kv", "get", "db-url"]).await;
        assert_eq!((ran.code, ran.stdout.as_slice()), (0, &b"postgres://agent"[..]), "command {i}: {}", ran.stderr);
    }
    let status = agent_only.json(&["unlock", "--status"]).await;
    assert_eq!(status["unlocks"], 1, "one Argon2id run, in `harden unlock`: {status}");
    assert_eq!(status["served"], 10, "{status}");

    // Another user of this machine cannot reach it: the directory and socket are the owner's alone,
    // and with the socket opened to everyone the agent still answers only its own user.
    let other_home = TempDir::new().unwrap();
    std::fs::set_permissions(other_home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut command = tokio::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "setsid", BIN])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("XDG_CONFIG_HOME", other_home.path())
            .env("HARDEN_SERVER", &app.proxy)
            .env("HARDEN_API_KEY", &v.owner)
            .env("HARDEN_AGENT_SOCK", &socket)
            .stdin(Stdio::null());
        command
    };
    let out = as_nobody(&["kv", "get", "db-url"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    std::fs::set_permissions(socket.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["kv", "get", "db-url"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "the agent served another user: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();

    // When the time runs out the agent is gone, and the next command needs the secret again.
    for _ in 0..300 {
        if !socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!socket.exists(), "the agent stopped when its time ran out");
    let msg = agent_only.fails(&["kv", "get", "db-url"], 2).await;
    assert!(msg.contains("no user secret"), "{msg}");

    // `harden lock` ends it before its time.
    let again = Cli { secret: Some(OWNER_SECRET.into()), ..agent_only };
    again.ok(&["unlock", "--for", "10m"]).await;
    assert_eq!(again.json(&["unlock", "--status"]).await["unlocks"], 1, "a new agent");
    again.ok(&["lock"]).await;
    assert!(!again.socket().exists());
    let locked = Cli { secret: None, ..again };
    locked.fails(&["kv", "get", "db-url"], 2).await;
}

/// A tmux session running one command, for the prompts a person answers.
struct Tmux {
    server: String,
}

impl Tmux {
    async fn start(cli: &Cli, command: &str) -> Self {
        let server = format!("harden-test-{}", uuid::Uuid::new_v4().simple());
        // The environment from a 0600 file, so no key or secret is in any process's argv.
        let mut env = String::from("unset XDG_RUNTIME_DIR HARDEN_USER_SECRET HARDEN_NEW_USER_SECRET TMUX\n");
        for (name, value) in cli.envs() {
            env.push_str(&format!("export {name}='{}'\n", value.replace('\'', "'\\''")));
        }
        let env_file = cli.home.path().join(format!("{server}.env"));
        std::fs::write(&env_file, env).unwrap();
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let script = format!(". {}; {command}; echo EXIT=$?; sleep 60", env_file.display());
        let out = tokio::process::Command::new("tmux")
            .args(["-L", &server, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50", &script])
            .env_remove("TMUX")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        Self { server }
    }

    async fn screen(&self) -> String {
        let out = tokio::process::Command::new("tmux")
            .args(["-L", &self.server, "capture-pane", "-p", "-S", "-100"])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_for(&self, text: &str) -> String {
        for _ in 0..300 {
            let screen = self.screen().await;
            if screen.contains(text) {
                return screen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{text:?} never appeared:\n{}", self.screen().await);
    }

    async fn type_line(&self, text: &str) {
        let status = tokio::process::Command::new("tmux")
            .args(["-L", &self.server, "send-keys", "-l", text])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let status = tokio::process::Command::new("tmux")
            .args(["-L", &self.server, "send-keys", "Enter"])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux").args(["-L", &self.server, "kill-server"]).status();
    }
}

#[tokio::test]
async fn the_prompts_on_a_terminal_echo_nothing() {
    let app = spawn_app().await;
    let v = hostile::victim(&app).await;
    let cli = Cli::new(&app, &v.owner, None);
    const TYPED_VALUE: &str = "typed-value-9d2e";
    const API_KEY_SHOWN: &str = "EXIT=0";

    // The API key at `harden login`.
    let login = Cli { api_key: String::new(), ..Cli::new(&app, &v.owner, None) };
    let tmux = Tmux::start(&login, &format!("{BIN} login --server {}", app.proxy)).await;
    tmux.wait_for("API key:").await;
    tmux.type_line(&v.owner).await;
    let screen = tmux.wait_for(API_KEY_SHOWN).await;
    assert!(screen.contains("logged in"), "{screen}");
    assert!(!screen.contains(&v.owner), "the API key was echoed:\n{screen}");

    // A value and the user secret at `harden kv put`.
    let tmux = Tmux::start(&cli, &format!("{BIN} kv put typed")).await;
    tmux.wait_for("Value for typed:").await;
    tmux.type_line(TYPED_VALUE).await;
    tmux.wait_for("User secret:").await;
    tmux.type_line(OWNER_SECRET).await;
    let screen = tmux.wait_for("EXIT=").await;
    assert!(screen.contains("EXIT=0") && screen.contains("stored typed version 1"), "{screen}");
    assert!(!screen.contains(TYPED_VALUE) && !screen.contains(OWNER_SECRET), "echoed:\n{screen}");
    let read = expect_json(hostile::owner_get(&app, &v, "typed").await, StatusCode::OK).await;
    assert_eq!(hostile::value_of(&read), TYPED_VALUE);

    // After an agent's time runs out, the next command asks for the secret again.
    let unlocked = Cli { secret: Some(OWNER_SECRET.into()), ..cli };
    unlocked.ok(&["unlock", "--for", "1s"]).await;
    for _ in 0..100 {
        if !unlocked.socket().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!unlocked.socket().exists(), "the agent dropped its keys and stopped when its second ran out");
    let cli = Cli { secret: None, ..unlocked };
    let tmux = Tmux::start(&cli, &format!("{BIN} kv get typed")).await;
    tmux.wait_for("User secret:").await;
    tmux.type_line("a wrong secret").await;
    let screen = tmux.wait_for("EXIT=").await;
    assert!(screen.contains("invalid user secret") && screen.contains("EXIT=4"), "{screen}");
    assert!(!screen.contains("a wrong secret"), "{screen}");
}

#[tokio::test]
async fn keys_rekey_takes_the_new_secret_typed_twice_and_the_old_one_stops_opening() {
    let app = spawn_app().await;
    let v = hostile::victim(&app).await;
    hostile::owner_put(&app, &v, "db-url", "postgres://before-the-rekey").await;
    let cli = Cli::new(&app, &v.owner, None);
    const NEW_SECRET: &str = "the new secret 5b1c, typed twice";
    const MISTYPED: &str = "the new secret 5b1c, mistyped";

    // `harden keys rekey` on a terminal: the current secret, the new one, the new one again.
    let rekey = |again: &'static str| {
        let cli = &cli;
        async move {
            let tmux = Tmux::start(cli, &format!("{BIN} keys rekey")).await;
            for (prompt, typed) in [("User secret:", OWNER_SECRET), ("New user secret:", NEW_SECRET), ("Again:", again)]
            {
                tmux.wait_for(prompt).await;
                tmux.type_line(typed).await;
            }
            tmux.wait_for("EXIT=").await
        }
    };

    // The second entry differs: refused with a clear message, and nothing changes.
    let screen = rekey(MISTYPED).await;
    assert!(
        screen.contains("harden: the two secrets differ; nothing was changed") && screen.contains("EXIT=2"),
        "{screen}"
    );
    for typed in [OWNER_SECRET, NEW_SECRET, MISTYPED] {
        assert!(!screen.contains(typed), "{typed:?} was echoed:\n{screen}");
    }
    let old = Cli { secret: Some(OWNER_SECRET.into()), ..Cli::new(&app, &v.owner, None) };
    assert_eq!(old.ok(&["kv", "get", "db-url"]).await.stdout, b"postgres://before-the-rekey", "nothing changed");

    // Typed the same twice: the keys are sealed under the new secret, which opens the old value.
    let screen = rekey(NEW_SECRET).await;
    assert!(screen.contains("sealed under the new secret") && screen.contains("EXIT=0"), "{screen}");
    assert!(!screen.contains(OWNER_SECRET) && !screen.contains(NEW_SECRET), "echoed:\n{screen}");
    let new = Cli { secret: Some(NEW_SECRET.into()), ..Cli::new(&app, &v.owner, None) };
    assert_eq!(new.ok(&["kv", "get", "db-url"]).await.stdout, b"postgres://before-the-rekey");
    let msg = old.fails(&["kv", "get", "db-url"], 4).await;
    assert!(msg.contains("invalid user secret"), "{msg}");
    // A wrong old secret at the rekey itself is refused the same way, and changes nothing.
    let wrong = Cli { secret: Some(OWNER_SECRET.into()), ..Cli::new(&app, &v.owner, None) };
    let mut rekey = wrong.command(&["keys", "rekey"]);
    rekey.env("HARDEN_NEW_USER_SECRET", "yet another secret");
    let out = rekey.output().await.unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(new.ok(&["kv", "get", "db-url"]).await.stdout, b"postgres://before-the-rekey");
}

#[tokio::test]
async fn a_hostile_server_is_refused_by_the_cli_as_by_the_proxy() {
    use harden_domain::crypto::VersionAt;
    let app = spawn_app().await;
    let v = hostile::victim(&app).await;
    let owner = Cli::new(&app, &v.owner, Some(OWNER_SECRET));
    owner.run_with(&["kv", "put", "db-url", "--stdin"], Some(b"postgres://first")).await;
    let share_id = owner.json(&["kv", "share", "db-url", "--to", &v.recipient_id.to_string()]).await["shareId"]
        .as_str()
        .unwrap()
        .to_owned();

    // A1, with the API key alone, plants a data key; the CLI reads the planted version flagged and
    // its next write is under a fresh key the attacker cannot open, re-wrapped to the open share.
    let a = hostile::attacker(&app, &v);
    let stored = expect_json(app.get("/kv/db-url", &v.owner).await, StatusCode::OK).await;
    let epoch = stored["keyEpoch"].as_u64().unwrap();
    expect_json(
        a.plant("db-url", json!({ "keyEpoch": epoch }), VersionAt { version: 2, epoch }, "planted").await,
        StatusCode::OK,
    )
    .await;
    let read = owner.run(&["kv", "get", "db-url"]).await;
    assert_eq!(read.stdout, b"planted");
    assert!(read.stderr.contains("not sealed by your own keys"), "{}", read.stderr);
    // `run` and `inject` refuse to hand a planted value to a program unless told to.
    let marker = owner.home.path().join("ran");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    let msg = owner.fails(&[&["run", "--env", "DB=harden://kv/db-url"][..], &touch].concat(), 1).await;
    assert!(msg.contains("not sealed by your own keys") && !marker.exists(), "{msg}");
    owner.ok(&[&["run", "--allow-unsealed", "--env", "DB=harden://kv/db-url"][..], &touch].concat()).await;
    assert!(marker.exists());
    owner.run_with(&["kv", "put", "db-url", "--stdin"], Some(b"postgres://the-real-one")).await;
    assert!(!a.can_read_current("db-url").await, "the CLI's write opened with the planted key");
    assert_eq!(hostile::recipient_reads(&app, &v, &share_id).await, "postgres://the-real-one");
    let pre = a.plant("later", json!({ "freshKey": true }), VersionAt { version: 1, epoch: 1 }, "bait").await;
    expect_json(pre, StatusCode::CREATED).await;
    owner.run_with(&["kv", "put", "later", "--stdin"], Some(b"the real later")).await;
    assert!(!a.can_read_current("later").await);

    // A rollback: version 1's ciphertext written back as the newest is refused.
    owner.run_with(&["kv", "put", "flag", "--stdin"], Some(b"old: off")).await;
    owner.run_with(&["kv", "put", "flag", "--stdin"], Some(b"new: on")).await;
    let old = expect_json(app.get("/kv/flag?version=1", &v.owner).await, StatusCode::OK).await;
    let body = json!({
        "ciphertextB64": old["ciphertextB64"], "encryptedAesKeyEccB64": old["encryptedAesKeyEccB64"],
        "encryptedAesKeyKyberB64": old["encryptedAesKeyKyberB64"], "keyEpoch": old["keyEpoch"],
    });
    expect_json(app.put("/kv/flag", &v.owner, body).await, StatusCode::OK).await;
    let msg = owner.fails(&["kv", "get", "flag"], 1).await;
    assert!(msg.contains("does not open as version 3"), "{msg}");
    assert_eq!(owner.ok(&["kv", "get", "flag", "--version", "2"]).await.stdout, b"new: on");

    // A4 swaps the recipient's keys in the read model: the CLI's share is refused, naming both
    // fingerprints, and nothing is wrapped to the swapped keys.
    owner.run_with(&["kv", "put", "other", "--stdin"], Some(b"second")).await;
    let genuine = owner.json(&["keys", "fingerprint", &v.recipient_id.to_string()]).await["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let attacker_keys = harden_domain::crypto::PrivateKeys::from_seeds([0x66; 32], [0x67; 64]);
    let swapped = hostile::swap_directory_keys(&app, v.org, v.recipient_id, &attacker_keys).await;
    let grants = app.events_of_type("ShareGranted").await;
    let msg = owner.fails(&["kv", "share", "other", "--to", &v.recipient_id.to_string()], 1).await;
    assert!(msg.contains(&genuine) && msg.contains(&swapped), "{msg}");
    assert_eq!(app.events_of_type("ShareGranted").await, grants, "nothing was shared to the swapped keys");
    // The recipient's own CLI opens what was shared to their genuine keys.
    let recipient = Cli::new(&app, &v.recipient, Some(RECIPIENT_SECRET));
    assert_eq!(recipient.ok(&["kv", "get", "--shared", &share_id]).await.stdout, b"postgres://the-real-one");
    // Confirmed out of band, the new fingerprint is accepted.
    owner.ok(&["kv", "share", "other", "--to", &v.recipient_id.to_string(), "--fingerprint", &swapped]).await;
}

#[tokio::test]
async fn the_audit_trail_is_listed_and_its_chain_recomputed_on_the_users_machine() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    app.put_kv("k0", &fx.member_key, 1).await;
    // A moment between the first write and the others (this machine's clock is the server's).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 1..3 {
        app.put_kv(&format!("k{i}"), &fx.member_key, 1).await;
    }
    let admin = Cli::new(&app, &fx.admin_key, None);
    let kv = admin.json(&["audit", "ls"]).await;
    assert_eq!(kv.as_array().unwrap().len(), 3, "{kv}");
    assert_eq!(admin.json(&["audit", "ls", "--key", "k1"]).await.as_array().unwrap().len(), 1);
    let at = |entry: &Value| entry["timestampUtc"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(at(&kv[0]) < between && between <= at(&kv[1]), "{between} {kv}");
    let since = between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let after = admin.json(&["audit", "ls", "--since", &since]).await;
    let keys: Vec<_> = after.as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, ["k1", "k2"], "only the entries at or after --since: {after}");
    let before = admin.json(&["audit", "ls", "--until", &since]).await;
    assert_eq!(before.as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before[0]["key"], "k0");
    admin.fails(&["audit", "ls", "--since", "yesterday"], 2).await;
    let all = admin.json(&["audit", "ls", "--all"]).await;
    assert_eq!(all.as_array().unwrap().len(), 8, "org, 2 users, 2 keys, 3 KV writes");
    assert!(admin.ok(&["audit", "ls"]).await.text().starts_with("SEQ"));

    let verified = admin.json(&["audit", "verify"]).await;
    assert_eq!((verified["intact"].as_bool(), verified["entries"].as_u64()), (Some(true), Some(8)), "{verified}");
    let head = verified["headHash"].as_str().unwrap().to_owned();
    assert_eq!(head, all[7]["hash"].as_str().unwrap());
    admin.ok(&["audit", "verify", "--head", &head]).await;
    let msg = admin.fails(&["audit", "verify", "--head", &"ab".repeat(32)], 1).await;
    assert!(msg.contains("no longer passes through the given head"), "{msg}");

    // A database writer edits entries: the chain the server now serves does not add up.
    sqlx::query("UPDATE audit_entries SET user_id = NULL WHERE org_id = $1 AND action = 'create'")
        .bind(fx.org)
        .execute(&app.pool)
        .await
        .unwrap();
    let msg = admin.fails(&["audit", "verify"], 1).await;
    assert!(msg.contains("BROKEN at entry 6") && msg.contains("hash does not match"), "{msg}");
    // Members do not read the org's audit: the server's refusal, as it is.
    let msg = Cli::new(&app, &fx.member_key, None).fails(&["audit", "ls"], 1).await;
    assert!(msg.contains("org admin role required"), "{msg}");
}
