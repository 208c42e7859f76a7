//! Org storage settings on the command side: the secret key sealed under the master key (the org
//! id as associated data), the service URL checked against the network policy on its resolved
//! addresses (which are then the ones used), and the bucket checked for reachability before the
//! settings are stored.

use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use harden_domain::crypto;
use harden_domain::values::KeyBlob;
use harden_domain::OrgId;

use crate::bootstrap::MasterKey;
use crate::error::Error;

/// Seals and opens org storage secret keys.
#[derive(Clone)]
pub struct SecretSealer {
    key: Zeroizing<[u8; 32]>,
}

impl SecretSealer {
    pub fn from_master(master: &MasterKey) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, master.expose())
            .expand(b"harden/v1/storage-secret-key", key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self { key }
    }

    pub fn seal(&self, org: OrgId, secret: &SecretString) -> KeyBlob {
        let mut nonce = [0u8; crypto::NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let blob =
            crypto::seal_server_secret(&self.key, nonce, org.as_uuid().as_bytes(), secret.expose_secret().as_bytes());
        KeyBlob::parse("sealedSecretKey", &STANDARD.encode(blob), 1..=4096).expect("a sealed key fits")
    }

    pub fn open(&self, org: OrgId, sealed: &KeyBlob) -> Result<SecretString, Error> {
        let blob =
            STANDARD.decode(sealed.as_str()).map_err(|e| anyhow::anyhow!("a sealed storage key is not base64: {e}"))?;
        let secret = crypto::open_server_secret(&self.key, org.as_uuid().as_bytes(), &blob)
            .map_err(|_| anyhow::anyhow!("the org's storage secret key does not open under this master key"))?;
        let secret =
            String::from_utf8(secret.to_vec()).map_err(|_| anyhow::anyhow!("a storage secret key is not UTF-8"))?;
        Ok(SecretString::from(secret))
    }
}

/// Whether an address is one a tenant must not make harden call: loopback, private, link-local,
/// unique-local, CGNAT, unspecified, multicast, documentation or benchmarking ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// The host and port of a checked service URL.
pub fn host_port(service_url: &str) -> Result<(String, u16), Error> {
    let (scheme, rest) = service_url.split_once("://").ok_or_else(|| Error::invalid("serviceUrl has no scheme"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let default = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) =
            v6.split_once(']').ok_or_else(|| Error::invalid("serviceUrl has an unclosed IPv6 address"))?;
        let port = tail
            .strip_prefix(':')
            .map(str::parse)
            .transpose()
            .map_err(|_| Error::invalid("serviceUrl has an invalid port"))?;
        (host.to_owned(), port.unwrap_or(default))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => {
                (host.to_owned(), port.parse().map_err(|_| Error::invalid("serviceUrl has an invalid port"))?)
            }
            None => (authority.to_owned(), default),
        }
    };
    Ok((host, port))
}

/// Resolves the service URL's host once, refuses internal addresses unless allowed, and answers
/// the address to use (the check and the connection see the same address).
pub async fn resolve_checked(service_url: &str, allow_private: bool) -> Result<SocketAddr, Error> {
    let (host, port) = host_port(service_url)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| {
            Error::invalid(format!("storage check failed: the host '{host}' of serviceUrl does not resolve (DNS)"))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::invalid(format!(
            "storage check failed: the host '{host}' of serviceUrl does not resolve (DNS)"
        )));
    }
    if allow_private {
        return Ok(addrs[0]);
    }
    addrs.iter().copied().find(|a| !is_internal(a.ip())).ok_or_else(|| {
        Error::invalid(format!(
            "serviceUrl resolves to a loopback, private or link-local address ({}); this server does not call its internal network (HARDEN_STORAGE_ALLOW_PRIVATE_NETWORKS)",
            addrs[0].ip()
        ))
    })
}

/// Storage settings as the caller sent them.
pub struct StorageRequest<'a> {
    pub service_url: &'a str,
    pub bucket: &'a str,
    pub access_key: &'a str,
    pub secret_key: Option<&'a str>,
    pub force_path_style: bool,
    pub region: Option<&'a str>,
}

/// Settings ready to reach the store with: the plain secret key, and the address to connect to.
pub struct Reachable {
    pub settings: harden_domain::storage::StorageSettings,
    pub secret_key: SecretString,
    pub address: SocketAddr,
}

impl crate::service::Harden {
    /// The org's storage settings (its admins and the global admin), if configured.
    pub async fn storage_settings(
        &self,
        caller: &crate::Principal,
        org: OrgId,
    ) -> Result<Option<harden_domain::storage::StorageSettings>, Error> {
        crate::access::require_admin_of(caller, org)?;
        let state = self.orgs.load(&org.to_string()).await?;
        if !state.exists() {
            return Err(Error::not_found(crate::access::ORG_NOT_FOUND));
        }
        Ok(state.storage().cloned())
    }

    /// Validates a storage request and resolves its address under the network policy: what
    /// [`crate::object_store::check`] then tries before [`Self::store_storage`] records it.
    pub async fn prepare_storage(
        &self,
        caller: &crate::Principal,
        org: OrgId,
        req: StorageRequest<'_>,
        allow_private: bool,
    ) -> Result<Reachable, Error> {
        use harden_domain::storage::{parse_bucket, parse_credential, parse_region, parse_service_url};
        let current = self.storage_settings(caller, org).await?;
        let service_url = parse_service_url(req.service_url)?;
        let bucket = parse_bucket(req.bucket)?;
        let access_key = parse_credential("accessKey", req.access_key, 128)?;
        let region = parse_region(req.region)?;
        let (secret_key, sealed) = match (req.secret_key, &current) {
            (Some(secret), _) => {
                let secret = SecretString::from(parse_credential("secretKey", secret, 256)?);
                let sealed = self.sealer().seal(org, &secret);
                (secret, sealed)
            }
            // Kept when omitted: the stored one, opened to check the store with it.
            (None, Some(current)) => {
                (self.sealer().open(org, &current.sealed_secret_key)?, current.sealed_secret_key.clone())
            }
            (None, None) => return Err(Error::invalid("secretKey is required the first time storage is configured")),
        };
        let address = resolve_checked(&service_url, allow_private).await?;
        let settings = harden_domain::storage::StorageSettings {
            service_url,
            bucket,
            access_key,
            sealed_secret_key: sealed,
            force_path_style: req.force_path_style,
            region,
        };
        Ok(Reachable { settings, secret_key, address })
    }

    pub async fn store_storage(
        &self,
        org: OrgId,
        settings: harden_domain::storage::StorageSettings,
        meta: crate::Meta,
    ) -> Result<crate::Committed, Error> {
        let command = harden_domain::org::OrgCommand::ConfigureStorage { settings };
        self.orgs.execute(&org.to_string(), command, &meta.with_org(org)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "52.216.1.1", "2a00:1450::1"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn host_and_port_come_from_the_url() {
        assert_eq!(host_port("https://s3.example.com").unwrap(), ("s3.example.com".into(), 443));
        assert_eq!(host_port("http://127.0.0.1:8014/base").unwrap(), ("127.0.0.1".into(), 8014));
        assert_eq!(host_port("http://[::1]:9000").unwrap(), ("::1".into(), 9000));
    }

    #[test]
    fn sealed_secrets_open_only_for_their_org() {
        let master = MasterKey::parse_b64(&STANDARD.encode([7u8; 32])).unwrap();
        let sealer = SecretSealer::from_master(&master);
        let org = OrgId::from_uuid(uuid::Uuid::from_u128(1));
        let sealed = sealer.seal(org, &SecretString::from("s3-secret"));
        assert!(!sealed.as_str().contains("s3-secret"));
        assert_eq!(sealer.open(org, &sealed).unwrap().expose_secret(), "s3-secret");
        assert!(sealer.open(OrgId::from_uuid(uuid::Uuid::from_u128(2)), &sealed).is_err());
    }
}
