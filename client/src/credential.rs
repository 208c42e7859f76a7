//! The API key a request presents, in either of its two forms.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;

pub const API_KEY_HEADER: &str = "x-api-key";
pub const API_SECRET_HEADER: &str = "x-api-secret";

/// An API key as presented: `X-Api-Key: hk_…` alone, or the Cloud API's pair
/// `X-Api-Key: <key>` with `X-API-Secret: <secret>` (header names are case-insensitive). The Proxy
/// forwards it to the Backend exactly as it came, both halves.
#[derive(Clone, Copy)]
pub struct ApiCredential<'h> {
    pub key: &'h str,
    pub secret: Option<&'h str>,
}

impl<'h> ApiCredential<'h> {
    /// The key alone.
    pub fn key(key: &'h str) -> Self {
        Self { key, secret: None }
    }

    /// 401 when `X-Api-Key` is missing or either header is not text.
    pub fn from_headers(headers: &'h HeaderMap) -> Result<Self, Error> {
        let text = |name: &str| {
            headers.get(name).map(|v| v.to_str().map(str::trim).map_err(|_| Error::unauthorized("invalid API key")))
        };
        let key = text(API_KEY_HEADER).ok_or_else(|| Error::unauthorized("missing X-Api-Key header"))??;
        let secret = text(API_SECRET_HEADER).transpose()?;
        Ok(Self { key, secret })
    }

    /// The headers that present this credential on a request of one's own (marked sensitive, so
    /// nothing logs them).
    pub fn headers(&self) -> Result<HeaderMap, Error> {
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| Error::unauthorized("invalid API key")).map(|mut v| {
                v.set_sensitive(true);
                v
            })
        };
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(API_KEY_HEADER), value(self.key)?);
        if let Some(secret) = self.secret {
            headers.insert(HeaderName::from_static(API_SECRET_HEADER), value(secret)?);
        }
        Ok(headers)
    }
}
