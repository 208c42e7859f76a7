//! An org's S3-compatible file storage: where its encrypted files go. The secret key is kept only
//! sealed under the server's master key (the command side seals it, with the org id as associated
//! data) and is never returned.

use serde::{Deserialize, Serialize};

use crate::values::{InvalidValue, KeyBlob};

/// The settings as stored in the Org aggregate's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSettings {
    pub service_url: String,
    pub bucket: String,
    pub access_key: String,
    /// `nonce ‖ AES-256-GCM(storage key, secret key, AAD = org id)`, base64.
    pub sealed_secret_key: KeyBlob,
    pub force_path_style: bool,
    pub region: String,
}

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// `http(s)://host[:port][/path]`: scheme and host required, no credentials, query or fragment.
pub fn parse_service_url(raw: &str) -> Result<String, InvalidValue> {
    let bad = || invalid("serviceUrl must be an absolute http or https URL (https://s3.example.com)");
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || raw.len() > 2048 {
        return Err(bad());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty()
        || authority.contains('@')
        || rest.contains(['?', '#'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// S3 bucket naming rules: 3 to 63 characters of lower-case letters, digits, dots and hyphens,
/// beginning and ending with a letter or digit, no `..`, and not an IP address.
pub fn parse_bucket(raw: &str) -> Result<String, InvalidValue> {
    let ok = (3..=63).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !raw.contains("..")
        && raw.parse::<std::net::Ipv4Addr>().is_err();
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            "bucket must be 3 to 63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit",
        ))
    }
}

/// Access keys and secret keys: printable ASCII without spaces, 1 to `max` characters.
pub fn parse_credential(field: &str, raw: &str, max: usize) -> Result<String, InvalidValue> {
    if raw.is_empty() || raw.len() > max || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!("{field} must be 1 to {max} printable characters without spaces")));
    }
    Ok(raw.to_owned())
}

/// A region name such as `us-east-1` (default when absent).
pub fn parse_region(raw: Option<&str>) -> Result<String, InvalidValue> {
    let region = raw.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("us-east-1");
    if region.len() > 32 || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(invalid("region must be lower-case letters, digits and hyphens (us-east-1)"));
    }
    Ok(region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_are_absolute_http_urls_without_credentials() {
        assert_eq!(parse_service_url("https://s3.example.com/").unwrap(), "https://s3.example.com");
        assert!(parse_service_url("http://127.0.0.1:8014").is_ok());
        for bad in
            ["s3.example.com", "ftp://x", "https://", "https://user:pw@s3.example.com", "https://a/?x=1", "https://a b"]
        {
            assert!(parse_service_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["org-files", "abc", "a.b-c1"] {
            assert!(parse_bucket(good).is_ok(), "{good}");
        }
        for bad in ["ab", "Org", "-abc", "abc-", "a..b", "192.168.1.1", &"a".repeat(64), "a_b"] {
            assert!(parse_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_and_regions_are_checked() {
        assert!(parse_credential("accessKey", "AKIA123", 128).is_ok());
        assert!(parse_credential("accessKey", "", 128).is_err());
        assert!(parse_credential("accessKey", "a b", 128).is_err());
        assert_eq!(parse_region(None).unwrap(), "us-east-1");
        assert_eq!(parse_region(Some("eu-west-3")).unwrap(), "eu-west-3");
        assert!(parse_region(Some("EU West")).is_err());
    }
}
