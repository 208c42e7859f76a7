//! The org's audit trail as the Backend serves it (`GET /audit`, org admins), read page by page:
//! the command-line client and the dashboard both list it and recompute its chain
//! (`harden_domain::audit_chain::verify`).

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::backend::{encode_query_value, Backend};
use crate::credential::ApiCredential;
use crate::error::Error;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    entries: Vec<T>,
    next_cursor: Option<String>,
}

/// Every entry `filters` select (oldest first), or the first `limit`, following the cursors. A
/// server that answers the same cursor twice is refused rather than followed for ever.
pub async fn entries<T: DeserializeOwned>(
    backend: &Backend,
    api_key: ApiCredential<'_>,
    filters: &[(&str, &str)],
    limit: Option<usize>,
) -> Result<Vec<T>, Error> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={}", encode_query_value(v))).collect();
        query.push("limit=1000".to_owned());
        if let Some(c) = &cursor {
            query.push(format!("cursor={}", encode_query_value(c)));
        }
        let page: Page<T> =
            backend.call(Method::GET, &["audit"], Some(&query.join("&")), api_key, None, &[]).await?.ok()?.json()?;
        entries.extend(page.entries);
        if let Some(limit) = limit.filter(|l| entries.len() >= *l) {
            entries.truncate(limit);
            return Ok(entries);
        }
        match page.next_cursor {
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                return Err(anyhow::anyhow!("the server answered the same page cursor twice").into());
            }
            Some(next) => cursor = Some(next),
            None => return Ok(entries),
        }
    }
}
