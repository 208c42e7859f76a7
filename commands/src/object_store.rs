//! The S3 adapter (aws-sdk-s3 over rustls with ring). A client connects only to the address the
//! network policy accepted ([`crate::storage::resolve_checked`]): its resolver answers that address
//! for the service's host (and `<bucket>.host` in virtual-host style) and refuses anything else, so
//! a DNS answer that changes between the check and the connection cannot redirect it.

use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
pub use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use secrecy::ExposeSecret;

use crate::error::Error;
use crate::storage::{host_port, Reachable};

#[derive(Debug, Clone)]
struct PinnedResolver {
    host: String,
    ip: IpAddr,
}

impl ResolveDns for PinnedResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name == self.host || name.ends_with(&format!(".{}", self.host)) {
            DnsFuture::ready(Ok(vec![self.ip]))
        } else {
            DnsFuture::ready(Err(ResolveDnsError::new(format!("refusing to resolve {name}"))))
        }
    }
}

/// A client for the org's bucket, connecting only to the checked address.
pub fn client(reachable: &Reachable) -> Result<aws_sdk_s3::Client, Error> {
    let settings = &reachable.settings;
    let (host, _) = host_port(&settings.service_url)?;
    let tls_context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::default())
        .build()
        .map_err(|e| anyhow::anyhow!("TLS set-up for S3 failed: {e}"))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_with_resolver(PinnedResolver { host: host.to_ascii_lowercase(), ip: reachable.address.ip() });
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(settings.region.clone()))
        .endpoint_url(&settings.service_url)
        .force_path_style(settings.force_path_style)
        .credentials_provider(Credentials::new(
            settings.access_key.clone(),
            reachable.secret_key.expose_secret().to_owned(),
            None,
            None,
            "harden-org-storage",
        ))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(20))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .build();
    Ok(aws_sdk_s3::Client::from_conf(config))
}

/// What went wrong reaching a store, in words for the org admin (never the store's raw answer).
pub fn describe<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::TimeoutError(_) => "the storage service did not answer in time".into(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "the storage service did not answer in time".into(),
        SdkError::DispatchFailure(_) => {
            "could not connect to serviceUrl (connection refused, unreachable or TLS failure)".into()
        }
        SdkError::ServiceError(e) => match (e.raw().status().as_u16(), e.err().code()) {
            (403, _) | (_, Some("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied")) => {
                "the storage service refused the credentials (accessKey / secretKey)".into()
            }
            (404, _) | (_, Some("NoSuchBucket" | "NotFound")) => "the bucket does not exist".into(),
            (status, _) => format!("the storage service answered HTTP {status}"),
        },
        _ => "the storage service could not be reached".into(),
    }
}

/// Checks that the bucket is there and the credentials work (HeadBucket).
pub async fn check(reachable: &Reachable) -> Result<(), Error> {
    let client = client(reachable)?;
    client
        .head_bucket()
        .bucket(&reachable.settings.bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("storage check failed: {}", describe(&e))))
}

/// Deletes an object; one that is already gone counts as deleted.
pub async fn delete(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    match client.delete_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(()),
        Err(e) => Err(describe(&e)),
    }
}
