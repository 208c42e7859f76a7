//! The outcomes of a command other than success. Each kind is one HTTP status in `api/`; the
//! message of every kind but `Internal` is written for the caller. `Internal` and `Unavailable`
//! carry the cause for the log, which is never shown.

use harden_domain::email_claim::EmailClaimError;
use harden_domain::org::OrgError;
use harden_domain::recovery::RecoveryError;
use harden_domain::registration::RegistrationError;
use harden_domain::secret::SecretError;
use harden_domain::share::ShareError;
use harden_domain::user::UserError;
use harden_domain::values::InvalidValue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A broken rule or invalid input.
    #[error("{0}")]
    Invalid(String),
    /// The caller's credentials died while the request was in flight.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or belonging to another tenant (which, for the caller, is the same thing).
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it (exists already, keys already set, deactivated).
    #[error("{0}")]
    Conflict(String),
    /// A check-and-set write found another version current.
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: u64 },
    /// It existed once and is gone for good (an expired verification token).
    #[error("{0}")]
    Gone(String),
    /// The payment provider refused (a declined card), with its reason.
    #[error("{0}")]
    PaymentRefused(String),
    /// An outside service (Stripe, the mail server) failed or could not be reached; the caller may
    /// retry.
    #[error("{0}")]
    Upstream(String),
    /// Too many failures; try again after this many seconds.
    #[error("too many failed attempts; try again later")]
    Throttled { retry_after_secs: u64 },
    /// Concurrent writers kept winning; the caller may retry.
    #[error("too many concurrent changes to the same record, retry shortly")]
    Busy,
    /// The database is out of reach (down, restarting, refusing or dropping connections, or no
    /// pooled connection came free in time): the request could not be served now, and a retry
    /// may succeed. The cause is logged, never shown.
    #[error("the database is unavailable, retry shortly")]
    Unavailable(#[source] anyhow::Error),
    /// Infrastructure failure; logged, never shown.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Infrastructure failures: a database outage anywhere in the cause's chain is `Unavailable`,
/// anything else `Internal`. (The chain shows typed errors only: an error made with
/// `anyhow::Error::from_boxed` must be classified where its type is still known.)
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        if e.chain().any(|cause| cause.downcast_ref::<sqlx::Error>().is_some_and(is_database_outage)) {
            Error::Unavailable(e)
        } else {
            Error::Internal(e)
        }
    }
}

/// Whether a database error says the database is out of reach rather than that a query failed:
/// no connection (refused, reset, cut by a shutdown), none free before the pool's acquire timeout,
/// or the server refusing work while it shuts down, restarts or recovers (SQLSTATE class 08,
/// 57P01 to 57P03, 53300).
pub fn is_database_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Error::Forbidden(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
}

impl From<InvalidValue> for Error {
    fn from(e: InvalidValue) -> Self {
        Error::Invalid(e.0)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // Text PostgreSQL cannot store (a NUL byte) is the caller's mistake, wherever it slipped in.
        if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
            if matches!(code.as_ref(), "22021" | "22P05") {
                return Error::Invalid(
                    "the request contains characters that cannot be stored (such as a NUL byte)".into(),
                );
            }
        }
        anyhow::Error::new(e).context("database query failed").into()
    }
}

impl From<OrgError> for Error {
    fn from(e: OrgError) -> Self {
        let msg = e.to_string();
        match e {
            OrgError::AlreadyExists | OrgError::InviteAccepted | OrgError::AlreadyMember | OrgError::InviteExists => {
                Error::Conflict(msg)
            }
            OrgError::NotFound | OrgError::InviteNotFound | OrgError::MemberNotFound => Error::NotFound(msg),
            OrgError::InviteExpired => Error::Gone(msg),
            OrgError::InviteEmailMismatch | OrgError::OwnerRoleFixed | OrgError::LastOwner => Error::Forbidden(msg),
        }
    }
}

impl From<UserError> for Error {
    fn from(e: UserError) -> Self {
        let msg = e.to_string();
        match e {
            UserError::NotFound | UserError::KeyNotFound => Error::NotFound(msg),
            UserError::InvalidRole | UserError::SealProofRequired | UserError::InvalidBundle(_) => Error::Invalid(msg),
            UserError::BundleKeysMismatch => Error::Conflict(msg),
            UserError::SealProofMismatch => Error::Forbidden(msg),
            UserError::GlobalAdminHasNoKeys => Error::Forbidden(msg),
            UserError::AlreadyExists | UserError::Deactivated | UserError::KeysAlreadySet => Error::Conflict(msg),
        }
    }
}

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::NotFound => Error::NotFound(e.to_string()),
            SecretError::VersionMismatch { current } => Error::VersionConflict { current },
            SecretError::KeyChanged | SecretError::ShareNotRewrapped(_) => Error::Conflict(e.to_string()),
        }
    }
}

impl From<RegistrationError> for Error {
    fn from(e: RegistrationError) -> Self {
        let msg = e.to_string();
        match e {
            RegistrationError::NotFound => Error::Invalid(msg),
            RegistrationError::Expired => Error::Gone(msg),
            RegistrationError::AlreadyRequested
            | RegistrationError::AlreadyCompleted
            | RegistrationError::PaidDifferently
            | RegistrationError::PaymentInFlight => Error::Conflict(msg),
        }
    }
}

impl From<EmailClaimError> for Error {
    fn from(e: EmailClaimError) -> Self {
        Error::Conflict(e.to_string())
    }
}

impl From<harden_domain::file::FileError> for Error {
    fn from(e: harden_domain::file::FileError) -> Self {
        match e {
            harden_domain::file::FileError::NotFound => Error::NotFound(e.to_string()),
            harden_domain::file::FileError::AlreadyExists => Error::Conflict(e.to_string()),
        }
    }
}

impl From<ShareError> for Error {
    fn from(e: ShareError) -> Self {
        let msg = e.to_string();
        match e {
            ShareError::NotFound => Error::NotFound(msg),
            ShareError::AlreadyExists => Error::Conflict(msg),
            ShareError::ExpiryInThePast | ShareError::UnknownPermission => Error::Invalid(msg),
        }
    }
}

impl From<RecoveryError> for Error {
    fn from(e: RecoveryError) -> Self {
        let msg = e.to_string();
        match e {
            RecoveryError::NotFound | RecoveryError::NothingPending => Error::NotFound(msg),
            RecoveryError::SelfTrustee => Error::Invalid(msg),
            RecoveryError::Expired => Error::Gone(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_out_of_reach_is_unavailable_however_deep_in_the_cause() {
        let reset = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let wrapped = anyhow::Error::new(reset()).context("Failed to load Secret x").context("while writing");
        assert!(matches!(Error::from(wrapped), Error::Unavailable(_)), "a reset connection under two contexts");
        assert!(matches!(Error::from(sqlx::Error::PoolTimedOut), Error::Unavailable(_)), "no connection came free");
        assert!(matches!(Error::from(reset()), Error::Unavailable(_)), "a bare reset");
    }

    #[test]
    fn other_infrastructure_failures_stay_internal() {
        assert!(matches!(Error::from(sqlx::Error::RowNotFound), Error::Internal(_)));
        assert!(matches!(Error::from(anyhow::anyhow!("an invariant broke")), Error::Internal(_)));
        let decode = sqlx::Error::Decode("bad column".into());
        assert!(matches!(Error::from(anyhow::Error::new(decode).context("Failed to read")), Error::Internal(_)));
    }
}
