//! harden's command-line client. The user secret, the private keys and every plaintext stay on
//! this machine: values and files are encrypted and decrypted here with harden's client library,
//! and only ciphertext and wrapped keys go to the server (the Backend's routes, through the public
//! edge). Not even the Proxy is trusted with a secret.
//!
//! The `harden` binary parses the commands ([`args`]) and calls [`run`]; exit codes are in [`fail`].

pub mod account;
pub mod agent;
pub mod args;
pub mod config;
pub mod fail;
pub mod files;
pub mod kv;
pub mod output;
pub mod prompt;
pub mod run;
pub mod session;

pub use account::AuditFilter;
pub use args::{ClientCommand, Global, Output};

use fail::Fail;
use session::Session;

/// Runs a client command; answers the process's exit code (the message is already on stderr).
pub async fn run(global: Global, command: ClientCommand) -> u8 {
    // No core file or ptrace of a process that holds keys or values.
    agent::harden_process();
    match dispatch(global, command).await {
        Ok(code) => code,
        Err(fail) => {
            eprintln!("harden: {}", output::clean(&fail.message));
            fail.code
        }
    }
}

async fn dispatch(global: Global, command: ClientCommand) -> fail::Result<u8> {
    let output = global.output;
    match command {
        ClientCommand::Login { server } => account::login(output, &server).await?,
        ClientCommand::Logout => account::logout(output).await?,
        ClientCommand::Lock => account::lock(output).await?,
        ClientCommand::Agent { socket } => agent::serve(&socket).await?,
        command => {
            let session = Session::open()?;
            match command {
                ClientCommand::Whoami => account::whoami(&session, output).await?,
                ClientCommand::Unlock { hold, status } => account::unlock(&session, output, hold, status).await?,
                ClientCommand::Keys { command } => account::keys(&session, output, command).await?,
                ClientCommand::Kv { command } => kv::run(&session, output, command).await?,
                ClientCommand::Files { command } => files::run(&session, output, command).await?,
                ClientCommand::Users { command: args::UsersCommand::Ls } => account::users_ls(&session, output).await?,
                ClientCommand::Run(args) => return run::run(&session, args).await,
                ClientCommand::Inject { input, out, allow_unsealed } => {
                    run::inject(&session, &input, out.as_deref(), allow_unsealed).await?
                }
                ClientCommand::Login { .. }
                | ClientCommand::Logout
                | ClientCommand::Lock
                | ClientCommand::Agent { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
    Ok(0)
}

/// `harden audit ls` (org admins).
pub async fn audit_ls(global: Global, filter: AuditFilter) -> u8 {
    finish(async { account::audit_ls(&Session::open()?, global.output, filter).await }.await)
}

/// `harden audit verify` against the server, recomputed on this machine.
pub async fn audit_verify(global: Global, head: Option<String>) -> u8 {
    finish(async { account::audit_verify(&Session::open()?, global.output, head.as_deref()).await }.await)
}

fn finish(result: fail::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(Fail { code, message }) => {
            eprintln!("harden: {}", output::clean(&message));
            code
        }
    }
}
