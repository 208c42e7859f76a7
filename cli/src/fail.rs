//! How a command fails: a one-line message on stderr and an exit code a script can act on.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | refused by the server (its `error` is shown as it is), or a check on this machine failed |
//! | 2 | usage: a bad flag, a missing argument, no server or API key configured, no secret to ask for |
//! | 3 | the server cannot be reached |
//! | 4 | wrong user secret |

use reqwest::StatusCode;

pub const REFUSED: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNREACHABLE: u8 = 3;
pub const WRONG_SECRET: u8 = 4;

#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Fail>;

impl Fail {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: USAGE, message: message.into() }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self { code: REFUSED, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self { code: REFUSED, message: message.into() }
    }
}

/// A usage error from the argument parser (clap's several lines: the error, tips, the usage, a
/// hint) as one line for `harden: <message>`: the error's own lines up to the first blank one,
/// joined, without the `error: ` prefix and with control characters escaped.
pub fn usage_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered.lines().map(str::trim).take_while(|line| !line.is_empty()).collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    crate::output::clean(&format!("{message} (see --help)"))
}

impl From<harden_client::Error> for Fail {
    fn from(e: harden_client::Error) -> Self {
        let message = e.message();
        let status = e.http_status();
        let code = match &e {
            harden_client::Error::Status(StatusCode::UNAUTHORIZED, _)
                if message == harden_client::unlock::INVALID_SECRET =>
            {
                WRONG_SECRET
            }
            // This machine could not reach the server, or the server could not reach its Backend.
            harden_client::Error::Status(StatusCode::BAD_GATEWAY, _) => UNREACHABLE,
            harden_client::Error::Upstream(s, _)
                if matches!(
                    *s,
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                ) =>
            {
                UNREACHABLE
            }
            _ => REFUSED,
        };
        let message = match (&e, status) {
            (harden_client::Error::Status(StatusCode::BAD_GATEWAY, _), _) => "cannot reach the server".to_owned(),
            _ => message,
        };
        Self { code, message }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Self::refused(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_one_line() {
        let rendered = "error: unrecognized subcommand 'frobnicate'\n\n  tip: a similar subcommand exists: 'rm'\n\nUsage: harden kv <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(usage_line(rendered), "unrecognized subcommand 'frobnicate' (see --help)");
        let rendered = "error: the following required arguments were not provided:\n  --to <TO>\n\nUsage: harden kv share --to <TO> <NAME>\n";
        assert_eq!(usage_line(rendered), "the following required arguments were not provided: --to <TO> (see --help)");
        assert_eq!(usage_line("error: invalid value 'x\u{1b}[2J'"), "invalid value 'x\\u{1b}[2J' (see --help)");
    }
}
