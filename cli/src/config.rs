//! Where the command-line client talks to and as whom: `$XDG_CONFIG_HOME/harden/config.toml`
//! (mode 0600, written atomically), overridden by `HARDEN_SERVER` and `HARDEN_API_KEY`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::fail::{Fail, Result};

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Option<String>,
    pub api_key: Option<String>,
}

/// The server and the API key a command uses, with where each came from.
pub struct Profile {
    pub server: String,
    pub api_key: Zeroizing<String>,
}

/// `$XDG_CONFIG_HOME/harden` (or `~/.config/harden`).
pub fn dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("harden"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Fail::usage("neither XDG_CONFIG_HOME nor HOME is set: cannot find the config file"))?;
    Ok(PathBuf::from(home).join(".config").join("harden"))
}

pub fn path() -> Result<PathBuf> {
    Ok(dir()?.join("config.toml"))
}

pub fn load() -> Result<Config> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| Fail::usage(format!("{} is not a valid config file: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(Fail::usage(format!("cannot read {}: {e}", path.display()))),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The server and API key: the environment first, then the config file.
pub fn profile() -> Result<Profile> {
    let config = load()?;
    let server = env("HARDEN_SERVER")
        .or(config.server)
        .ok_or_else(|| Fail::usage("no server: run `harden login --server URL` or set HARDEN_SERVER"))?;
    let api_key = env("HARDEN_API_KEY")
        .or(config.api_key)
        .ok_or_else(|| Fail::usage("not logged in: run `harden login` or set HARDEN_API_KEY"))?;
    Ok(Profile { server: normalize_server(&server)?, api_key: Zeroizing::new(api_key) })
}

/// `URL` as the base of the Backend's routes (the public edge), checked to be http(s).
pub fn normalize_server(raw: &str) -> Result<String> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| Fail::usage(format!("invalid server URL {raw}: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(Fail::usage(format!("invalid server URL {raw}: use https://host[:port]")));
    }
    // The API key goes in a header on every request: in clear text only to this machine, unless asked.
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(host) => host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if url.scheme() == "http" && !loopback && std::env::var_os("HARDEN_ALLOW_HTTP").is_none_or(|v| v != "1") {
        return Err(Fail::usage(format!(
            "refusing http:// to {raw}: the API key would travel in clear text; use https (or set HARDEN_ALLOW_HTTP=1 on a network you trust)"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Writes `config` to the config file: a 0600 file next to it, synced, then renamed over it.
pub fn save(config: &Config) -> Result<PathBuf> {
    let path = path()?;
    let text = Zeroizing::new(toml::to_string(config).map_err(|e| Fail::internal(e.to_string()))?);
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Removes the config file (a missing one is fine).
pub fn remove() -> Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Fail::usage(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file beside it (created 0600,
/// never readable by others), synced, renamed over `path`. On any failure nothing is left behind.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename replaced any older file with this 0600 one; the directory entry is synced too.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    };
    write().map_err(|e| Fail::usage(format!("cannot write {}: {e}", path.display())))?;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    if mode & 0o077 != 0 {
        let _ = std::fs::remove_file(path);
        return Err(Fail::usage(format!(
            "{} would be readable by others (mode {mode:o}) on this file system; removed it",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_0600_and_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file is left: {left:?}");
    }

    #[test]
    fn server_urls_are_checked() {
        assert_eq!(normalize_server("https://vault.example.com/").unwrap(), "https://vault.example.com");
        assert_eq!(normalize_server("http://127.0.0.1:8081").unwrap(), "http://127.0.0.1:8081");
        assert!(normalize_server("vault.example.com").is_err());
        assert!(normalize_server("ftp://vault.example.com").is_err());
        assert!(normalize_server("http://vault.example.com").is_err(), "clear text off this machine");
        assert!(normalize_server("http://localhost:8081").is_ok());
    }
}
