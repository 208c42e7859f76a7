//! `harden-bench seed`: the data of the mixed Proxy load, created through the API, and the fixture
//! `bench/load.lua` reads (a Lua file that returns one table).
//!
//! - An org (business plan) and `--users` users with keys, each under their own user secret.
//! - Per user, `--keys` values `kv-0` .. (the reads and writes of the load) and enough records
//!   `sh-0` .. to share that every share the load creates is a new (record, recipient) pair: a
//!   second open share of one record to one recipient is refused (409), and the load must see no
//!   error. The pairs are listed in the fixture as slots; `bench/load.lua` hands each wrk thread
//!   of each run its own slice.
//! - Per user, one share of `kv-0` with the next user, whom the load lets read it (the recipient's
//!   side of sharing).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;

use crate::api::Api;

#[derive(clap::Args)]
pub struct Args {
    /// The Backend's base URL (administration).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    backend: String,
    /// The Proxy's base URL (keys, values, shares).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    proxy: String,
    /// The global admin key file of that harden.
    #[arg(long)]
    admin_key_file: PathBuf,
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// Values per user that the load reads and writes.
    #[arg(long, default_value_t = 20)]
    keys: usize,
    /// How many shares the load may create in all runs together.
    #[arg(long, default_value_t = 6000)]
    share_slots: usize,
    /// Plaintext bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Where to write the fixture.
    #[arg(long)]
    out: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "sharing needs at least two users");
    let admin_key = std::fs::read_to_string(&args.admin_key_file).context("read the global admin key")?;
    let api = Api::new(&args.backend, &args.proxy, Duration::from_secs(120))?;
    let started = std::time::Instant::now();
    let (org, org_admin) = api.org(admin_key.trim(), "load").await?;
    let users = api.users_with_keys(&org_admin, &org, args.users).await?;

    // Enough share records per user that the pairs (owner, record, other user) cover the slots.
    let pairs_per_record = args.users * (args.users - 1);
    let share_records = args.share_slots.div_ceil(pairs_per_record);
    let value = vec![b'v'; args.value_bytes];
    let writes = users.iter().flat_map(|user| {
        let names = (0..args.keys).map(|j| format!("kv-{j}")).chain((0..share_records).map(|j| format!("sh-{j}")));
        names.map(move |name| (user, name))
    });
    let mut written = futures::stream::iter(writes.map(|(user, name)| {
        let (api, value) = (&api, &value);
        async move { api.put(user, &name, value).await }
    }))
    .buffer_unordered(32);
    let mut records = 0usize;
    while let Some(outcome) = written.next().await {
        outcome?;
        records += 1;
    }
    drop(written);

    let mut shared = Vec::with_capacity(users.len());
    for (i, owner) in users.iter().enumerate() {
        let recipient = (i + 1) % users.len();
        shared.push((recipient, api.share(owner, "kv-0", &users[recipient].id).await?));
    }

    let mut lua = String::from("-- written by harden-bench seed; read by bench/load.lua\nreturn {\n  users = {\n");
    for user in &users {
        writeln!(
            lua,
            "    {{ id = {}, key = {}, secret = {} }},",
            quote(&user.id),
            quote(&user.api_key),
            quote(&user.secret)
        )?;
    }
    writeln!(lua, "  }},\n  keys = {},\n  value = {},\n  shared = {{", args.keys, quote(&STANDARD.encode(&value)))?;
    for (recipient, share) in &shared {
        writeln!(lua, "    {{ user = {}, share = {} }},", recipient + 1, quote(share))?;
    }
    lua.push_str("  },\n  slots = {\n");
    // Interleaved so that any slice taken with a stride spreads over owners and recipients.
    let mut slots = 0usize;
    'fill: for record in 0..share_records {
        for offset in 1..users.len() {
            for owner in 0..users.len() {
                if slots == args.share_slots {
                    break 'fill;
                }
                let recipient = &users[(owner + offset) % users.len()];
                writeln!(
                    lua,
                    "    {{ owner = {}, record = \"sh-{record}\", recipient = {} }},",
                    owner + 1,
                    quote(&recipient.id)
                )?;
                slots += 1;
            }
        }
    }
    lua.push_str("  },\n}\n");
    std::fs::write(&args.out, lua).with_context(|| format!("write {}", args.out.display()))?;
    println!(
        "{{\"seed\":{{\"org\":\"{org}\",\"users\":{},\"records\":{records},\"shares\":{},\"shareSlots\":{slots},\"seconds\":{:.1}}}}}",
        users.len(),
        shared.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A Lua string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
