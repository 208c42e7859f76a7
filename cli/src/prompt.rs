//! Questions asked on the terminal (`/dev/tty`) with echo off: secrets, API keys, values. Never
//! from argv, never echoed; a process without a terminal gets an error instead of a hang.

use zeroize::Zeroizing;

use crate::fail::{Fail, Result};

/// One answer typed without echo.
pub fn hidden(question: &str) -> std::io::Result<Zeroizing<String>> {
    rpassword::prompt_password(question).map(Zeroizing::new)
}

/// A new secret, typed twice.
pub fn new_secret(question: &str, env: &str) -> Result<Zeroizing<String>> {
    if let Some(secret) = std::env::var_os(env).filter(|s| !s.is_empty()) {
        return secret.into_string().map(Zeroizing::new).map_err(|_| Fail::usage(format!("{env} is not valid UTF-8")));
    }
    let no_terminal = |_| Fail::usage(format!("no terminal to ask for the secret: set {env}"));
    let first = hidden(question).map_err(no_terminal)?;
    let again = hidden("Again: ").map_err(no_terminal)?;
    if first != again {
        return Err(Fail::usage("the two secrets differ; nothing was changed"));
    }
    Ok(first)
}
