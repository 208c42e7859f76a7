//! Org storage settings on the command side: the secret key sealed under the master key (the org
//! id as associated data), the service URL checked against the network policy on its resolved
//! addresses (which are then the ones used), and the bucket checked for reachability before the
//! settings are stored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
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
        Self { key: master.derive(b"harden/v1/storage-secret-key") }
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
/// unique-local and site-local, CGNAT, unspecified, multicast, documentation or benchmarking ranges,
/// and every IPv6 form that carries an IPv4 address a gateway or the host itself would reach
/// (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo): such an address is refused whatever IPv4
/// address it carries, since which one it reaches is up to the network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
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
                // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96 (deprecated, still routed by some stacks).
                || s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0)
                // NAT64: the well-known prefix 64:ff9b::/96 and the local-use 64:ff9b:1::/48.
                || (s[0] == 0x64 && s[1] == 0xff9b)
                // 6to4 2002::/16 and Teredo 2001::/32.
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0)
                // Unique-local fc00::/7, link-local fe80::/10, site-local fec0::/10 (deprecated).
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // Documentation 2001:db8::/32, discard-only 100::/64.
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || s[..4] == [0x100, 0, 0, 0]
        }
    }
}

/// Where an org's storage may point. By default only public addresses; a multi-tenant stack that
/// runs its own object store lists exactly that host and port (`HARDEN_STORAGE_ALLOWED_HOSTS`,
/// e.g. `minio:9000`), and a single-tenant install may allow every internal address
/// (`HARDEN_STORAGE_ALLOW_PRIVATE_NETWORKS`).
#[derive(Clone, Debug, Default)]
pub struct NetworkPolicy {
    allow_private: bool,
    allowed_hosts: Arc<[(String, u16)]>,
}

impl NetworkPolicy {
    /// `allowed_hosts`: comma-separated `host:port` pairs (`[v6]:port` for an IPv6 literal).
    pub fn new(allow_private: bool, allowed_hosts: &str) -> Result<Self, String> {
        let allowed_hosts = allowed_hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|entry| {
                let (host, port) = entry
                    .rsplit_once(':')
                    .ok_or_else(|| format!("'{entry}' is not host:port (the port is required)"))?;
                let port = port.parse::<u16>().map_err(|_| format!("'{entry}' has an invalid port"))?;
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
                    return Err(format!("'{entry}' is not host:port"));
                }
                Ok((host.to_ascii_lowercase(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { allow_private, allowed_hosts: allowed_hosts.into() })
    }

    /// Any address may be called (single-tenant installs and the tests).
    pub fn allow_private() -> Self {
        Self { allow_private: true, allowed_hosts: Arc::from([]) }
    }

    /// Whether `host` and `port` are listed exactly (the host case-insensitively).
    pub fn lists(&self, host: &str, port: u16) -> bool {
        self.allowed_hosts.iter().any(|(h, p)| *p == port && h.eq_ignore_ascii_case(host))
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

/// Resolves the service URL's host once, refuses internal addresses unless the policy allows them
/// (every address, or this exact host and port), and answers the address to use (the check and the
/// connection see the same address).
pub async fn resolve_checked(service_url: &str, policy: &NetworkPolicy) -> Result<SocketAddr, Error> {
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
    if policy.allow_private || policy.lists(&host, port) {
        return Ok(addrs[0]);
    }
    addrs.iter().copied().find(|a| !is_internal(a.ip())).ok_or_else(|| {
        Error::invalid(format!(
            "serviceUrl resolves to a loopback, private or link-local address ({}); this server calls only public addresses and the hosts it lists (HARDEN_STORAGE_ALLOWED_HOSTS)",
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
        policy: &NetworkPolicy,
    ) -> Result<Reachable, Error> {
        use harden_domain::storage::{parse_bucket, parse_credential, parse_region, parse_service_url};
        // The request on its own first: a bad field is 400 whatever the org has stored.
        let service_url = parse_service_url(req.service_url)?;
        let bucket = parse_bucket(req.bucket)?;
        let access_key = parse_credential("accessKey", req.access_key, 128)?;
        let region = parse_region(req.region)?;
        let secret_key = req.secret_key.map(|secret| parse_credential("secretKey", secret, 256)).transpose()?;
        let current = self.storage_settings(caller, org).await?;
        let (secret_key, sealed) = match (secret_key, &current) {
            (Some(secret), _) => {
                let secret = SecretString::from(secret);
                let sealed = self.sealer().seal(org, &secret);
                (secret, sealed)
            }
            // Kept when omitted: the stored one, opened to check the store with it.
            (None, Some(current)) => {
                (self.sealer().open(org, &current.sealed_secret_key)?, current.sealed_secret_key.clone())
            }
            (None, None) => return Err(Error::invalid("secretKey is required the first time storage is configured")),
        };
        let address = resolve_checked(&service_url, policy).await?;
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

    fn refused(addresses: &[&str]) {
        for address in addresses {
            assert!(is_internal(address.parse().unwrap()), "{address} must be refused");
        }
    }

    #[test]
    fn internal_ipv4_addresses_are_refused() {
        refused(&["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]);
    }

    #[test]
    fn loopback_unique_local_and_link_local_ipv6_are_refused() {
        refused(&["::1", "::", "fd00::1", "fc00::1", "fe80::1", "ff02::1"]);
    }

    #[test]
    fn site_local_ipv6_is_refused() {
        refused(&["fec0::1", "fec0:1:2:3::4", "feff:ffff::1"]);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_refused_whatever_address_it_carries() {
        refused(&["::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::ffff:169.254.169.254"]);
    }

    #[test]
    fn ipv4_compatible_ipv6_is_refused() {
        refused(&["::127.0.0.1", "::10.0.0.1", "::8.8.8.8"]);
    }

    #[test]
    fn nat64_is_refused() {
        refused(&["64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::808:808", "64:ff9b:1::a00:1"]);
    }

    #[test]
    fn six_to_four_and_teredo_are_refused() {
        refused(&["2002:7f00:1::1", "2002:a00:1::", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"]);
    }

    #[test]
    fn documentation_and_discard_ranges_are_refused() {
        refused(&["2001:db8::1", "100::1", "192.0.2.1", "198.18.0.1", "240.0.0.1"]);
    }

    #[test]
    fn public_addresses_are_allowed() {
        for public in ["8.8.8.8", "52.216.1.1", "2a00:1450::1", "2600:1f18::1", "2001:4860::8888"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn allowed_hosts_are_exact_host_and_port_pairs() {
        let policy = NetworkPolicy::new(false, "minio:9000, [fd00::5]:9000,S3.Internal:443").unwrap();
        assert!(policy.lists("minio", 9000));
        assert!(policy.lists("MINIO", 9000));
        assert!(policy.lists("fd00::5", 9000));
        assert!(policy.lists("s3.internal", 443));
        assert!(!policy.lists("minio", 9001), "another port of a listed host");
        assert!(!policy.lists("minio.evil", 9000));
        assert!(!policy.lists("postgres", 5432));
        for bad in ["minio", "minio:port", "minio:70000", ":9000", "user@minio:9000"] {
            assert!(NetworkPolicy::new(false, bad).is_err(), "{bad}");
        }
        assert!(NetworkPolicy::new(false, "").unwrap().allowed_hosts.is_empty());
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
