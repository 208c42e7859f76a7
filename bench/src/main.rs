//! # harden-bench
//!
//! Load, fault and benchmark tools for a running harden. Nothing here is part of the server; the
//! scripts in `bench/` start harden and call these.
//!
//! # Layout
//! - [`kv`] — `harden-bench kv`: the KV benchmark behind `bench/run` (Backend and Proxy phases), and
//!   `harden-bench crypto`: the in-process cost of one unlock, wrap and unwrap.
//! - [`seed`] — `harden-bench seed`: an org, users with keys and values, and shares, created through
//!   the API; writes the fixture `bench/load.lua` reads (the mixed load of `bench/load`).
//! - [`check`] — `harden-bench check`: projection and relay lag, then the consistency of the event
//!   store, the read models and the JetStream stream (each event exactly once).
//! - [`counts`] — `harden-bench counts`: per endpoint, the SQL statements, transactions and round
//!   trips one request costs in PostgreSQL (`bench/run` prints them).
//! - [`faults`] — `harden-bench faults`: PostgreSQL restarted, NATS stopped and started, harden
//!   killed with SIGKILL, each under a steady write load, on a private PostgreSQL and NATS
//!   ([`services`]); every acknowledged write is checked afterwards.

use clap::{Parser, Subcommand};

mod api;
mod check;
mod counts;
mod faults;
mod kv;
mod seed;
mod services;

#[derive(Parser)]
#[command(name = "harden-bench", about = "Load, fault and benchmark tools for harden")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The KV benchmark (Backend and Proxy phases) of `bench/run`.
    Kv(kv::Args),
    /// Time one unlock, one wrap and one unwrap in this process.
    Crypto,
    /// Create the data of the mixed Proxy load and write its fixture.
    Seed(seed::Args),
    /// Report projection and relay lag, wait for them to reach zero, check each event exactly once.
    Check(check::Args),
    /// Statements, transactions and round trips in PostgreSQL per request, per endpoint.
    Counts(counts::Args),
    /// Inject faults (PostgreSQL restart, NATS stop/start, SIGKILL of harden) under a write load.
    Faults(faults::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Kv(args) => kv::run(args).await,
        Command::Crypto => kv::crypto_costs(),
        Command::Seed(args) => seed::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Faults(args) => faults::run(args).await,
        Command::Counts(args) => counts::run(args).await,
    }
}
