//! A typed client of the Backend's routes, used by the Proxy and by the command-line client (which
//! reaches them through the Proxy's pass-through). It presents the caller's API key; it never sends
//! the user secret, a private key, a data key or a plaintext.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;

use crate::credential::ApiCredential;
use crate::error::Error;

#[derive(Clone)]
pub struct Backend {
    http: reqwest::Client,
    base: reqwest::Url,
    /// The Backend in this very process, when there is one: JSON calls go to it without a socket.
    local: Option<Arc<dyn InProcess>>,
}

/// A request for a Backend in this process: what would have gone on the wire.
pub struct LocalRequest {
    pub method: Method,
    /// The path, and the query if any, as it would have been sent.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A Backend served by this very process (the Proxy and the Backend in one `harden serve`). A
/// call is handed to the Backend's router as a value: the same routes, extractors and layers
/// answer it, with no socket, no HTTP encoding and no second parse of the request in between. The
/// answer is read whole, as [`Backend::send`] reads one from the network.
pub trait InProcess: Send + Sync + 'static {
    fn send(&self, request: LocalRequest) -> BoxFuture<'static, Result<Answer, Error>>;
}

/// The parts of `GET /users/me` the Proxy needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub public_key_ecc_b64: Option<String>,
    pub public_key_kyber_b64: Option<String>,
    pub encrypted_private_key_ecc_b64: Option<String>,
    pub encrypted_private_key_kyber_b64: Option<String>,
    #[serde(default)]
    pub key_bundle_b64: Option<String>,
    #[serde(default)]
    pub pins_b64: Option<String>,
}

/// A Backend answer: status, headers and body, to pass on unchanged when it is not a success.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow::anyhow!("the Backend answered an unexpected body: {e}").into())
    }

    /// Success, or the Backend's own error passed on as it is.
    pub fn ok(self) -> Result<Answer, Error> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(Error::Upstream(self.status, self.body))
        }
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || name == "host" || name == "content-length"
}

fn unreachable(e: reqwest::Error) -> Error {
    // Without the URL: its query may hold a verification token.
    tracing::warn!(error = %e.without_url(), "the Backend is unreachable");
    Error::status(StatusCode::BAD_GATEWAY, "the Backend is unreachable")
}

/// A Backend answer read whole.
async fn answer(response: reqwest::Response) -> Result<Answer, Error> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|_| Error::status(StatusCode::BAD_GATEWAY, "the Backend's answer was cut off"))?;
    Ok(Answer { status, headers, body })
}

impl Backend {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Self::with_client(base, reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(5)).build()?)
    }

    /// A client of the Backend at `base` over an HTTP client of one's own (its TLS roots, its
    /// timeouts).
    pub fn with_client(base: &str, http: reqwest::Client) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(base).map_err(|e| anyhow::anyhow!("invalid Backend URL {base}: {e}"))?;
        Ok(Self { http, base, local: None })
    }

    /// Sends JSON calls ([`Self::send`], [`Self::call`]) to `local` instead of over HTTP; streamed
    /// requests and answers (files, the pass-through) still go over HTTP.
    pub fn in_process(mut self, local: Arc<dyn InProcess>) -> Self {
        self.local = Some(local);
        self
    }

    /// `base` + path segments (each percent-encoded) + an optional query.
    pub fn url(&self, segments: &[&str], query: Option<&str>) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("an http base URL").pop_if_empty().extend(segments);
        url.set_query(query);
        url
    }

    pub async fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Answer, Error> {
        if let Some(local) = &self.local {
            let path_and_query = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            return local.send(LocalRequest { method, path_and_query, headers, body: body.unwrap_or_default() }).await;
        }
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        answer(request.send().await.map_err(unreachable)?).await
    }

    /// A request passed on with its body streamed and the answer streamed back: the pass-through
    /// routes, where a file's ciphertext may be on its way in either direction and is held whole
    /// nowhere in the Proxy.
    pub async fn send_streaming(
        &self,
        method: Method,
        url: reqwest::Url,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, Error> {
        self.http.request(method, url).headers(headers).body(body).send().await.map_err(unreachable)
    }

    /// A JSON request as the caller (their API key, in the form they presented it).
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        api_key: ApiCredential<'_>,
        json: Option<&serde_json::Value>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer, Error> {
        let mut headers = api_key.headers()?;
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        let body = json.map(|v| {
            headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Bytes::from(serde_json::to_vec(v).expect("JSON values serialize"))
        });
        self.send(method, self.url(segments, query), headers, body).await
    }

    /// A request as the caller with a streamed JSON body (a file on its way to the Backend).
    pub async fn call_streaming(
        &self,
        method: Method,
        segments: &[&str],
        api_key: ApiCredential<'_>,
        body: reqwest::Body,
        length: usize,
    ) -> Result<Answer, Error> {
        let mut headers = api_key.headers()?;
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(length));
        let request = self.http.request(method, self.url(segments, None)).headers(headers).body(body);
        answer(request.send().await.map_err(unreachable)?).await
    }

    /// A GET as the caller whose successful answer (up to `limit` bytes) is read into one buffer
    /// the caller may decode and decrypt in place; an error answer is passed on as it is.
    pub async fn fetch_owned(
        &self,
        segments: &[&str],
        api_key: ApiCredential<'_>,
        limit: usize,
    ) -> Result<Vec<u8>, Error> {
        self.fetch_owned_with(segments, api_key, limit, |_, _| ()).await
    }

    /// [`Self::fetch_owned`], telling `progress` the bytes read so far and the answer's length.
    pub async fn fetch_owned_with(
        &self,
        segments: &[&str],
        api_key: ApiCredential<'_>,
        limit: usize,
        mut progress: impl FnMut(usize, Option<usize>),
    ) -> Result<Vec<u8>, Error> {
        let response =
            self.http.get(self.url(segments, None)).headers(api_key.headers()?).send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return answer(response).await?.ok().map(|_| Vec::new());
        }
        let expected = response.content_length().map(|n| n as usize);
        let mut read = 0;
        let stream = response.bytes_stream().inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                read += chunk.len();
                progress(read, expected);
            }
        });
        read_limited(stream, expected, limit)
            .await
            .map_err(|_| anyhow::anyhow!("the Backend's answer is larger than any file can be"))?
            .ok_or_else(|| Error::status(StatusCode::BAD_GATEWAY, "the Backend's answer was cut off"))
    }

    pub async fn me(&self, api_key: ApiCredential<'_>) -> Result<Me, Error> {
        self.call(Method::GET, &["users", "me"], None, api_key, None, &[]).await?.ok()?.json()
    }
}

/// `raw` percent-encoded for a query string (everything but the unreserved characters).
pub fn encode_query_value(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Collects a byte stream into one buffer, refusing more than `limit` bytes (413); Ok(None): the
/// stream failed.
pub async fn read_limited<S, E>(mut stream: S, expected: Option<usize>, limit: usize) -> Result<Option<Vec<u8>>, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut buf = Vec::with_capacity(expected.unwrap_or(0).min(limit));
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return Ok(None) };
        if buf.len() + chunk.len() > limit {
            return Err(Error::status(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}
