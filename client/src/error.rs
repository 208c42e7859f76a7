//! What a client flow answers when it cannot go on: a refusal with an HTTP status and a message
//! (the Proxy answers it as it is; the command-line client prints the message and exits with the
//! code the status stands for), the Backend's own error passed on unchanged, or a failure of
//! harden itself.

use bytes::Bytes;
use reqwest::StatusCode;

#[derive(Debug)]
pub enum Error {
    /// A refusal: bad input, a wrong secret, keys that do not verify, a rollback.
    Status(StatusCode, String),
    /// The Backend's error answer (its status and JSON body), passed on as it is.
    Upstream(StatusCode, Bytes),
    /// Something that should not happen (an answer of the wrong shape, a failed task).
    Internal(anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(status: StatusCode, msg: impl Into<String>) -> Self {
        Error::Status(status, msg.into())
    }

    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Error::Status(StatusCode::UNAUTHORIZED, msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Status(StatusCode::CONFLICT, msg.into())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Status(StatusCode::BAD_REQUEST, msg.into())
    }

    /// The status this error answers with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::Status(status, _) | Error::Upstream(status, _) => *status,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a person reads: the refusal's, or the `error` of the Backend's answer.
    pub fn message(&self) -> String {
        match self {
            Error::Status(_, msg) => msg.clone(),
            Error::Upstream(status, body) => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("the server answered {status}")),
            Error::Internal(e) => format!("{e:#}"),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Internal(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}
