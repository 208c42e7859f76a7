//! Whom the Proxy encrypts to. A recipient's (or a trustee's) public keys are used only from a key
//! bundle that verifies (self-signed with Ed25519 and ML-DSA-65 for that user of that org) and
//! that matches the owner's pins: the fingerprints of the bundles this owner encrypted to before,
//! kept on the Backend sealed under the owner's own keys (the server can hide them, not forge them).
//! A changed bundle for a pinned user is refused, naming both fingerprints, until the owner passes
//! the new one as `expectedFingerprint`; keys published without a bundle are used only when the
//! owner passes their fingerprint. A first bundle is pinned on first use.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use harden_domain::bundle::{self, KeyBundle, Pins};
use harden_domain::crypto::{PrivateKeys, PublicKeys};

use crate::backend::Backend;
use crate::credential::ApiCredential;
use crate::error::Error;
use crate::random;
use crate::vault::{backend_public_keys, decode, Caller};
use crate::wire::PublicProfile;

/// What a profile's keys are worth: the keys, their fingerprint, and whether a bundle vouches for them.
pub struct Checked {
    pub keys: PublicKeys,
    pub fingerprint: String,
    pub verified: bool,
}

impl PublicProfile {
    /// The profile's keys, from its bundle when it has one (which must verify for this user of
    /// `org`), else as published.
    pub fn checked(&self, org: Uuid) -> Result<Option<Checked>, Error> {
        if let Some(b64) = &self.key_bundle_b64 {
            let bytes = decode("keyBundleB64", b64)?;
            let bundle = KeyBundle::verify(&bytes, org, self.id).map_err(|e| {
                Error::status(
                    StatusCode::CONFLICT,
                    format!("the key bundle the Backend serves for user {} does not verify ({e}): nothing was encrypted to it", self.id),
                )
            })?;
            let fingerprint = bundle.fingerprint().to_owned();
            return Ok(Some(Checked { keys: bundle.keys().clone(), fingerprint, verified: true }));
        }
        let (Some(ecc), Some(kyber)) = (&self.public_key_ecc_b64, &self.public_key_kyber_b64) else { return Ok(None) };
        let keys = backend_public_keys(ecc, kyber)?;
        Ok(Some(Checked { fingerprint: bundle::unverified_fingerprint(&keys), keys, verified: false }))
    }
}

/// A user's profile as the Proxy shows it: the Backend's, with the fingerprint the Proxy computed
/// and whether a verified bundle vouches for the keys.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifiedProfile {
    #[serde(flatten)]
    pub profile: PublicProfile,
    /// Compare it with the user out of band before trusting their keys the first time.
    pub fingerprint: Option<String>,
    /// A self-signed bundle vouches for the keys (false: keys published without one).
    pub keys_verified: bool,
}

/// The owner's pins, opened with their keys (none yet: empty).
fn open(caller: &Caller<'_>) -> Result<Pins, Error> {
    match &caller.me.pins_b64 {
        None => Ok(Pins::new()),
        Some(b64) => bundle::open_pins(&caller.keys.keys, caller.me.id, &decode("pinsB64", b64)?).map_err(|_| {
            Error::status(StatusCode::CONFLICT, "your pins do not open with your keys: they were tampered with")
        }),
    }
}

async fn save(backend: &Backend, caller: &Caller<'_>, pins: &Pins) -> Result<(), Error> {
    let sealed = bundle::seal_pins(&caller.keys.keys, caller.me.id, pins, random());
    let body = json!({ "pinsB64": STANDARD.encode(sealed) });
    backend.call(Method::PUT, &["users", "me", "pins"], None, caller.api_key, Some(&body), &[]).await?.ok()?;
    Ok(())
}

async fn profile(backend: &Backend, api_key: ApiCredential<'_>, user: Uuid) -> Result<PublicProfile, Error> {
    backend.call(Method::GET, &["users", "org", &user.to_string()], None, api_key, None, &[]).await?.ok()?.json()
}

/// The keys to encrypt to `recipient` with, checked against the owner's pins (see the module doc).
/// `expected` is the fingerprint the owner compared out of band, when they pass one.
pub async fn verified_recipient(
    backend: &Backend,
    caller: &Caller<'_>,
    recipient: Uuid,
    expected: Option<&str>,
) -> Result<PublicKeys, Error> {
    let profile = profile(backend, caller.api_key, recipient).await?;
    let Some(checked) = profile.checked(caller.org)? else {
        return Err(Error::status(
            StatusCode::BAD_REQUEST,
            "the recipient has no keys yet: they must call POST /v1/keys/generate before anything can be shared with them",
        ));
    };
    let expected = expected.map(str::trim).filter(|e| !e.is_empty());
    if expected.is_some_and(|e| e != checked.fingerprint) {
        return Err(Error::status(
            StatusCode::CONFLICT,
            format!(
                "the keys of user {recipient} do not have the fingerprint you expect: nothing was encrypted to them"
            ),
        ));
    }
    let mut pins = open(caller)?;
    match pins.get(&recipient) {
        Some(pinned) if *pinned == checked.fingerprint => return Ok(checked.keys),
        Some(pinned) if expected.is_none() => {
            return Err(Error::status(
                StatusCode::CONFLICT,
                format!(
                    "the keys of user {recipient} changed: you pinned fingerprint {pinned}, the Backend now serves {}. Compare the new one with them out of band, then pass it as expectedFingerprint; nothing was encrypted to them",
                    checked.fingerprint
                ),
            ));
        }
        None if !checked.verified && expected.is_none() => {
            return Err(Error::status(
                StatusCode::CONFLICT,
                format!(
                    "user {recipient} published keys without a signed bundle: compare their fingerprint (GET /v1/users/org/{recipient}) with them out of band and pass it as expectedFingerprint"
                ),
            ));
        }
        _ => {}
    }
    pins.insert(recipient, checked.fingerprint);
    save(backend, caller, &pins).await?;
    Ok(checked.keys)
}

/// The keys to re-wrap a record's new key to, in a rotation by its owner: only a recipient the
/// owner pinned (when they shared with them) and whose bundle still has the pinned fingerprint.
/// An open share to anyone else (a share the Backend lists but the owner never made) is refused,
/// never pinned on first use: a hostile server must not be able to add itself to a rotation.
pub async fn pinned_recipient(backend: &Backend, caller: &Caller<'_>, recipient: Uuid) -> Result<PublicKeys, Error> {
    let profile = profile(backend, caller.api_key, recipient).await?;
    let checked = profile.checked(caller.org)?;
    let pins = open(caller)?;
    match (pins.get(&recipient), checked) {
        (Some(pinned), Some(checked)) if *pinned == checked.fingerprint => Ok(checked.keys),
        (Some(pinned), Some(checked)) => Err(Error::status(
            StatusCode::CONFLICT,
            format!(
                "the keys of user {recipient}, who has an open share of this record, changed: you pinned {pinned}, the Backend now serves {}. Nothing was written; revoke the share, or share again passing the new fingerprint as expectedFingerprint",
                checked.fingerprint
            ),
        )),
        _ => Err(Error::status(
            StatusCode::CONFLICT,
            format!(
                "the Backend lists an open share of this record to user {recipient}, whom you never shared with (not in your pins). Nothing was written; revoke that share, or share with them yourself"
            ),
        )),
    }
}

/// The keys of an open share's recipient for a rotation by a writer who holds only the API key:
/// the bundle must verify (no pins can be opened without the owner's keys).
pub async fn bundle_keys(
    backend: &Backend,
    api_key: ApiCredential<'_>,
    org: Uuid,
    recipient: Uuid,
) -> Result<PublicKeys, Error> {
    match profile(backend, api_key, recipient).await?.checked(org)? {
        Some(Checked { keys, verified: true, .. }) => Ok(keys),
        _ => Err(Error::status(
            StatusCode::CONFLICT,
            format!(
                "user {recipient} has no verified key bundle: only the owner (with X-User-Secret) can re-wrap to them"
            ),
        )),
    }
}

/// The caller's own bundle, published if the Backend has none yet (keys made before bundles).
pub async fn publish_own(
    backend: &Backend,
    api_key: ApiCredential<'_>,
    keys: &PrivateKeys,
    org: Uuid,
    user: Uuid,
) -> Result<(), Error> {
    let bundle = KeyBundle::sign(keys, org, user);
    let body = json!({ "keyBundleB64": STANDARD.encode(bundle) });
    backend.call(Method::PUT, &["users", "me", "bundle"], None, api_key, Some(&body), &[]).await?.ok()?;
    Ok(())
}

impl From<PublicProfile> for VerifiedProfile {
    /// Checked for display against the org the profile names (sharing checks against the caller's).
    fn from(profile: PublicProfile) -> Self {
        let checked = profile.checked(profile.org_id.unwrap_or_default()).ok().flatten();
        VerifiedProfile {
            fingerprint: checked.as_ref().map(|c| c.fingerprint.clone()),
            keys_verified: checked.is_some_and(|c| c.verified),
            profile,
        }
    }
}
