//! `harden`: a thin shim over the libraries: the server's commands (`serve`, `migrate`, …) and the
//! command-line client's (`login`, `kv`, `files`, `run`, …). See `harden --help`.

use std::path::PathBuf;

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use harden::startup::{connect_and_migrate, Application, Surfaces};
use harden::{telemetry, Settings};
use harden_commands::{bootstrap, Harden};
use harden_nats::tail::TailOptions;
use harden_projections::audit::{self as projections_audit, Verdict};
use harden_projections::replay;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "harden",
    version,
    about = "A zero-knowledge, post-quantum secrets and file vault for teams",
    after_help = "Examples:\n  harden login --server https://vault.example.com\n  harden kv get db-url\n  harden run --env DATABASE_URL=harden://kv/db-url -- ./server\n  harden serve"
)]
struct Cli {
    /// A settings file (TOML). Defaults to ./harden.toml when it exists.
    #[arg(long, env = "HARDEN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    client: harden_cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Client(harden_cli::ClientCommand),
    /// Shell completions for bash, zsh or fish on standard output.
    #[command(
        after_help = "Examples:\n  harden completion bash > /etc/bash_completion.d/harden\n  harden completion zsh > \"${fpath[1]}/_harden\"\n  harden completion fish > ~/.config/fish/completions/harden.fish"
    )]
    Completion { shell: clap_complete::Shell },
    /// Run the Backend and the Proxy (or one of them).
    #[command(after_help = "Examples:\n  harden serve\n  harden serve --only proxy")]
    Serve {
        #[arg(long, value_enum, default_value_t = Surfaces::Both)]
        only: Surfaces,
    },
    /// Create the database if missing and apply pending migrations.
    #[command(after_help = "Example:\n  HARDEN_DATABASE_URL=postgres://… harden migrate")]
    Migrate,
    /// Rebuild read models from the event store (all, or one) while a live server keeps answering.
    #[command(after_help = "Example:\n  harden replay --projection kv")]
    Replay {
        /// directory, kv, files, shares, recovery or audit.
        #[arg(long)]
        projection: Option<String>,
    },
    /// Compliance: list, export or verify an org's hash-chained audit history.
    #[command(after_help = "Examples:\n  harden audit ls --key db-url\n  harden audit verify")]
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Integrations: follow the event stream on NATS.
    #[command(after_help = "Example:\n  harden events tail --org 7d1e… --from-start")]
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Issue a new global admin key into $HARDEN_DATA_DIR/global-admin.key (the old one stops working).
    #[command(after_help = "Example:\n  harden bootstrap --rotate-global-admin-key")]
    Bootstrap {
        #[arg(long, required = true)]
        rotate_global_admin_key: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the org's audit entries as JSON Lines, one entry a line, with the chain hashes.
    #[command(after_help = "Example:\n  harden audit export --org 7d1e… > audit.jsonl")]
    Export {
        #[arg(long)]
        org: Uuid,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
    },
    /// Your org's audit entries, from the server (org admins; `--output json` for scripts).
    #[command(
        after_help = "Examples:\n  harden audit ls --key db-url\n  harden audit ls --all --since 2026-12-01T00:00:00Z --output json"
    )]
    Ls {
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        user: Option<Uuid>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Every scope (users, keys, plans), not only the KV entries.
        #[arg(long)]
        all: bool,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Without --org: recompute your org's chain, as the server serves it, on this machine (org
    /// admins). With --org, on the server's machine: recompute it from the event store and compare
    /// it with the audit view. Exits non-zero and names the first entry that differs.
    #[command(
        after_help = "Examples:\n  harden audit verify --head 9f2c…\n  harden audit verify --org 7d1e… (on the server, with database access)"
    )]
    Verify {
        #[arg(long)]
        org: Option<Uuid>,
        /// A head hash saved earlier (e.g. from an export): the chain must still pass through it.
        #[arg(long)]
        head: Option<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print events from the JetStream stream as JSON Lines (subject and notice) as they arrive.
    #[command(after_help = "Example:\n  harden events tail --org 7d1e… --limit 10")]
    Tail {
        /// Only this org's events.
        #[arg(long)]
        org: Option<Uuid>,
        /// Start from the stream's first message instead of new ones.
        #[arg(long)]
        from_start: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = parse();
    // The client's commands need no server settings and log nothing.
    let command = match cli.command {
        Command::Client(command) => std::process::exit(harden_cli::run(cli.client, command).await.into()),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "harden",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Audit { command: AuditCommand::Ls { key, user, since, until, all, limit } } => {
            let filter = harden_cli::AuditFilter { key, user, since, until, all, limit };
            std::process::exit(harden_cli::audit_ls(cli.client, filter).await.into())
        }
        Command::Audit { command: AuditCommand::Verify { org: None, head } } => {
            std::process::exit(harden_cli::audit_verify(cli.client, head).await.into())
        }
        other => other,
    };
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings);
    match command {
        Command::Serve { only } => Application::build(&settings, only).await?.run_until_stopped().await,
        Command::Migrate => {
            connect_and_migrate(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Audit { command } => audit(&settings, command).await,
        Command::Replay { projection } => {
            let pool = connect_and_migrate(&settings).await?;
            let catalog = replay::catalog();
            let chosen: Vec<_> =
                catalog.iter().filter(|p| projection.as_deref().is_none_or(|n| n == p.name())).collect();
            if chosen.is_empty() {
                let names: Vec<_> = catalog.iter().map(|p| p.name()).collect();
                anyhow::bail!("unknown projection; choose one of {}", names.join(", "));
            }
            for p in chosen {
                let done = replay::replay(&pool, p).await?;
                println!("replayed {}: {} events, rows {:?}", done.projection, done.events, done.rows);
            }
            Ok(())
        }
        Command::Events { command: EventsCommand::Tail { org, from_start, limit } } => {
            let options = TailOptions {
                nats_url: settings.nats_url.clone(),
                stream: settings.nats_stream.clone(),
                subject_prefix: settings.nats_subject_prefix.clone(),
                org,
                from_start,
                limit,
            };
            harden_nats::tail::tail(options, &mut std::io::stdout().lock()).await
        }
        Command::Client(_) | Command::Completion { .. } => unreachable!("handled before the settings"),
        Command::Bootstrap { .. } => {
            let pool = connect_and_migrate(&settings).await?;
            let master_key =
                bootstrap::master_key(settings.master_key.as_ref(), settings.is_production(), &settings.data_dir)?;
            let harden = Harden::new(pool, &master_key);
            bootstrap::ensure_global_admin(&harden, &settings.data_dir).await?;
            let path = bootstrap::rotate_global_admin_key(&harden, &settings.data_dir).await?;
            tracing::info!(path = %path.display(), "issued a new global admin key");
            Ok(())
        }
    }
}

/// The command line, or exit: `--help` and `--version` print to standard output (exit 0); a usage
/// error is one line on standard error, `harden: <message>`, and exit code 2.
fn parse() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        // `harden` alone shows the help, as clap does (on stderr, exit 2).
        Err(e) if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("harden: {}", harden_cli::fail::usage_line(&e.render().to_string()));
            std::process::exit(harden_cli::fail::USAGE.into());
        }
    }
}

async fn audit(settings: &Settings, command: AuditCommand) -> anyhow::Result<()> {
    let pool = connect_and_migrate(settings).await?;
    match command {
        AuditCommand::Export { org, since } => {
            let mut out = std::io::stdout().lock();
            for entry in projections_audit::export(&pool, org, since).await? {
                serde_json::to_writer(&mut out, &entry)?;
                writeln!(out)?;
            }
            Ok(())
        }
        AuditCommand::Ls { .. } | AuditCommand::Verify { org: None, .. } => unreachable!("client commands"),
        AuditCommand::Verify { org: Some(org), head } => {
            match projections_audit::verify(&pool, org, head.as_deref()).await? {
                Verdict::Intact { entries, pending, head_seq } => {
                    let through = head_seq.map(|s| format!("; the given head is entry {s}")).unwrap_or_default();
                    println!("audit chain of org {org} verified: {entries} entries match the event store ({pending} not yet projected){through}");
                    Ok(())
                }
                Verdict::Broken { seq, event_id, reason } => {
                    let event = event_id.map(|e| format!(" (event {e})")).unwrap_or_default();
                    eprintln!("audit chain of org {org} BROKEN at entry {seq}{event}: {reason}");
                    std::process::exit(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn harden_and_every_command_have_an_example_in_their_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if !command.get_after_help().is_some_and(|h| h.to_string().contains("Example")) {
                missing.push(path.to_owned());
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "harden", &mut missing);
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
    }
}
