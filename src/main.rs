//! `harden`: a thin shim over the library. See `harden --help`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use harden::startup::{connect_and_migrate, Application, Surfaces};
use harden::{telemetry, Settings};
use harden_commands::{bootstrap, Harden};

#[derive(Parser)]
#[command(name = "harden", version, about = "A zero-knowledge, post-quantum secrets and file vault for teams")]
struct Cli {
    /// A settings file (TOML). Defaults to ./harden.toml when it exists.
    #[arg(long, env = "HARDEN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Backend and the Proxy (or one of them).
    Serve {
        #[arg(long, value_enum, default_value_t = Surfaces::Both)]
        only: Surfaces,
    },
    /// Create the database if missing and apply pending migrations.
    Migrate,
    /// Issue a new global admin key into $HARDEN_DATA_DIR/global-admin.key (the old one stops working).
    Bootstrap {
        #[arg(long, required = true)]
        rotate_global_admin_key: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings);
    match cli.command {
        Command::Serve { only } => Application::build(&settings, only).await?.run_until_stopped().await,
        Command::Migrate => {
            connect_and_migrate(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Bootstrap { .. } => {
            let pool = connect_and_migrate(&settings).await?;
            let harden = Harden::new(pool);
            bootstrap::ensure_global_admin(&harden, &settings.data_dir).await?;
            let path = bootstrap::rotate_global_admin_key(&harden, &settings.data_dir).await?;
            tracing::info!(path = %path.display(), "issued a new global admin key");
            Ok(())
        }
    }
}
