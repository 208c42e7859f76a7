//! The command-line interface of the client commands (`harden login`, `harden kv get`, …). The
//! server's own commands (`serve`, `migrate`, …) are in the `harden` binary beside these.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// Options every client command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct Global {
    /// How listings and results are printed: `text` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Store the server URL and your API key (asked without echo, or HARDEN_API_KEY) in
    /// $XDG_CONFIG_HOME/harden/config.toml, mode 0600.
    #[command(after_help = "Example:\n  harden login --server https://vault.example.com")]
    Login {
        /// The public edge of harden (the Proxy's URL).
        #[arg(long)]
        server: String,
    },
    /// Forget the stored API key and stop the agent.
    #[command(after_help = "Example:\n  harden logout")]
    Logout,
    /// Who the stored API key is: user, org, and your key fingerprint.
    #[command(after_help = "Example:\n  harden whoami --output json")]
    Whoami,
    /// Unlock your keys once (one Argon2id run) and keep them in a local agent for a while.
    #[command(after_help = "Examples:\n  harden unlock --for 1h\n  harden unlock --status")]
    Unlock {
        /// How long the agent holds the keys: 90s, 15m, 8h (at most 24h).
        #[arg(long = "for", default_value = "15m", value_parser = parse_duration)]
        hold: std::time::Duration,
        /// Show the agent's state instead of unlocking.
        #[arg(long)]
        status: bool,
    },
    /// Stop the agent now: the keys it holds are zeroized.
    #[command(after_help = "Example:\n  harden lock")]
    Lock,
    /// Your key pairs.
    #[command(after_help = "Examples:\n  harden keys generate\n  harden keys fingerprint bob")]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Encrypted values.
    #[command(after_help = "Examples:\n  harden kv put db-url\n  harden kv get db-url\n  harden kv ls --output json")]
    Kv {
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Encrypted files.
    #[command(after_help = "Examples:\n  harden files put report.pdf\n  harden files get 6d0c… -o report.pdf")]
    Files {
        #[command(subcommand)]
        command: FilesCommand,
    },
    /// The users of your org.
    #[command(after_help = "Example:\n  harden users ls")]
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Run a command with secrets from harden as environment variables.
    #[command(
        after_help = "Examples:\n  harden run --env DATABASE_URL=harden://kv/db-url -- ./server\n  harden run --env-file .env -- npm start\n\nIn the env file, a value of the form harden://kv/NAME, harden://kv/NAME?version=N or\nharden://shared/SHARE_ID is replaced by the secret; other values are passed as they are."
    )]
    Run(RunArgs),
    /// Render a template, replacing {{ harden://kv/NAME }} with secrets.
    #[command(after_help = "Example:\n  harden inject -i config.tpl.yaml -o config.yaml")]
    Inject {
        /// The template.
        #[arg(short = 'i', long = "in")]
        input: PathBuf,
        /// Where the result goes (written 0600, atomically); standard output without it.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// As for `run`: use values your own keys did not seal.
        #[arg(long)]
        allow_unsealed: bool,
    },
    /// The unlock agent itself (started by `harden unlock`).
    #[command(hide = true)]
    Agent {
        #[arg(long)]
        socket: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate your key pairs on this machine, sealed under a new user secret.
    #[command(after_help = "Example:\n  HARDEN_NEW_USER_SECRET=… harden keys generate")]
    Generate,
    /// Change your user secret (the keys stay; they are sealed again).
    #[command(after_help = "Example:\n  harden keys rekey")]
    Rekey,
    /// The fingerprint of your keys, or of a user of your org (compare it with them out of band).
    #[command(after_help = "Examples:\n  harden keys fingerprint\n  harden keys fingerprint bob@example.com")]
    Fingerprint {
        /// A user id, email or name of your org.
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Encrypt and store a value (from a file, standard input, or asked without echo).
    #[command(
        after_help = "Examples:\n  harden kv put db-url\n  printf %s \"$TOKEN\" | harden kv put api-token --stdin\n  harden kv put tls-key --file key.pem"
    )]
    Put {
        name: String,
        #[arg(long, conflicts_with = "stdin")]
        file: Option<PathBuf>,
        #[arg(long)]
        stdin: bool,
        /// Store it with the API key alone, encrypted to your public keys: no secret is needed and
        /// the writer cannot read it back (a CI job, a rotation service).
        #[arg(long)]
        write_only: bool,
        /// Only if the current version is this one (check-and-set).
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Decrypt a value: its raw bytes on standard output.
    #[command(
        after_help = "Examples:\n  harden kv get db-url\n  harden kv get db-url --version 3 --json\n  harden kv get --shared 0b6f…"
    )]
    Get {
        #[arg(required_unless_present = "shared")]
        name: Option<String>,
        #[arg(long)]
        version: Option<u64>,
        /// A value shared with you (its share id, from `harden kv shared`).
        #[arg(long, conflicts_with_all = ["name", "version"])]
        shared: Option<Uuid>,
        /// A JSON object with the value (base64 and, when it is UTF-8, text) and its version.
        #[arg(long)]
        json: bool,
    },
    /// Your records' names.
    #[command(after_help = "Example:\n  harden kv ls --prefix prod/")]
    Ls {
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Delete a record.
    #[command(after_help = "Example:\n  harden kv rm old-token")]
    Rm { name: String },
    /// A record's versions.
    #[command(after_help = "Example:\n  harden kv history db-url")]
    History { name: String },
    /// Share a value with a user of your org (encrypted to their verified, pinned keys).
    #[command(
        after_help = "Example:\n  harden kv share db-url --to bob@example.com --expires 2027-01-01T00:00:00Z --alias \"prod database\""
    )]
    Share {
        name: String,
        /// A user id, email or name of your org.
        #[arg(long)]
        to: String,
        #[arg(long)]
        expires: Option<DateTime<Utc>>,
        /// What the recipient sees the value as (the name by default).
        #[arg(long)]
        alias: Option<String>,
        /// The recipient's fingerprint as you compared it with them: needed for keys without a
        /// bundle, or when their keys changed since you last shared with them.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// The open shares of one of your records.
    #[command(after_help = "Example:\n  harden kv shares db-url")]
    Shares { name: String },
    /// Revoke a share: the recipient is refused at once and the value gets a new key.
    #[command(after_help = "Example:\n  harden kv revoke db-url 0b6f…")]
    Revoke { name: String, share_id: Uuid },
    /// Values shared with you.
    #[command(after_help = "Example:\n  harden kv shared")]
    Shared,
}

#[derive(Subcommand, Debug)]
pub enum FilesCommand {
    /// Encrypt and upload a file.
    #[command(after_help = "Example:\n  harden files put backup.tar.gz --name backups/2026-12.tar.gz")]
    Put {
        path: PathBuf,
        /// The name stored (encrypted) with it; the file's own name by default.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
        /// With the API key alone (see `harden kv put --write-only`).
        #[arg(long)]
        write_only: bool,
    },
    /// Download and decrypt a file (to standard output without -o).
    #[command(
        after_help = "Examples:\n  harden files get 6d0c… -o backup.tar.gz\n  harden files get --shared 0b6f… -o report.pdf"
    )]
    Get {
        #[arg(required_unless_present = "shared")]
        file_id: Option<Uuid>,
        #[arg(long, conflicts_with = "file_id")]
        shared: Option<Uuid>,
        /// Written 0600 and atomically.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Your files.
    #[command(after_help = "Example:\n  harden files ls")]
    Ls,
    /// Delete a file.
    #[command(after_help = "Example:\n  harden files rm 6d0c…")]
    Rm { file_id: Uuid },
    /// Share a file with a user of your org.
    #[command(after_help = "Example:\n  harden files share 6d0c… --to bob@example.com")]
    Share {
        file_id: Uuid,
        #[arg(long)]
        to: String,
        #[arg(long)]
        expires: Option<DateTime<Utc>>,
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// The open shares of one of your files.
    #[command(after_help = "Example:\n  harden files shares 6d0c…")]
    Shares { file_id: Uuid },
    /// Revoke a file share.
    #[command(after_help = "Example:\n  harden files revoke 6d0c… 0b6f…")]
    Revoke { file_id: Uuid, share_id: Uuid },
    /// Files shared with you.
    #[command(after_help = "Example:\n  harden files shared")]
    Shared,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// The active users of your org, with their key fingerprints.
    #[command(after_help = "Example:\n  harden users ls --output json")]
    Ls,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A dotenv file (NAME=value lines); harden:// values are resolved.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// NAME=harden://kv/KEY (or any value), repeatable.
    #[arg(long = "env", value_name = "NAME=REF")]
    pub env: Vec<String>,
    /// Start the command with only the variables harden sets (not this shell's).
    #[arg(long)]
    pub no_inherit_env: bool,
    /// Use values whose data key your own keys did not seal (someone with access to the server
    /// may have written them); refused by default.
    #[arg(long)]
    pub allow_unsealed: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// `90s`, `15m`, `8h`, `1h30m`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {raw:?}: use e.g. 90s, 15m, 8h or 1h30m");
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = raw.parse::<u64>() {
        return checked(secs, raw);
    }
    let (mut total, mut digits) = (0u64, String::new());
    for c in raw.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    checked(total, raw)
}

fn checked(secs: u64, raw: &str) -> Result<std::time::Duration, String> {
    if secs == 0 || secs > 86_400 {
        return Err(format!("invalid duration {raw:?}: between 1s and 24h"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_command_has_an_example_in_its_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                let path = format!("{path} {}", sub.get_name());
                if !sub.get_after_help().is_some_and(|h| h.to_string().contains("Example")) {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let root = <ClientCommand as clap::Subcommand>::augment_subcommands(clap::Command::new("harden"));
        let mut missing = Vec::new();
        walk(&root, "harden", &mut missing);
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("42").unwrap().as_secs(), 42);
        for bad in ["", "m", "15x", "0s", "2d", "10m5", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
