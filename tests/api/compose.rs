//! The deployment files name only real settings: every `HARDEN_*` variable that
//! `docker-compose.yml` and the `Dockerfile` set is loaded through `Settings::load`, which refuses
//! unknown variables and values of the wrong type. (`scripts/test` also validates the compose file
//! with the real Compose binary when it can install it.)

use std::collections::BTreeMap;

/// `NAME: value` and `NAME=value` pairs of `HARDEN_*` variables, with Compose's `${VAR:-default}`
/// and `${VAR:?message}` interpolations replaced by the default or a stand-in value.
fn harden_variables(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("ENV ").trim_end_matches('\\').trim();
        let Some(start) = line.find("HARDEN_") else { continue };
        if line.starts_with('#') || start != 0 {
            continue;
        }
        let separator = line.find([':', '=']);
        let Some((name, value)) = separator.map(|at| (&line[..at], &line[at + 1..])) else { continue };
        let value = value.trim().trim_matches('"');
        let value = match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            Some(inner) => match inner.split_once(":-") {
                Some((_, default)) => default.to_owned(),
                None => "c3RhbmQtaW4gdmFsdWUgZm9yIGEgcmVxdWlyZWQgdmFyaWFibGU=".to_owned(),
            },
            None => value.replace("${POSTGRES_PASSWORD:-harden}", "harden"),
        };
        found.push((name.trim().to_owned(), value));
    }
    found
}

/// Loads settings from these variables as `Settings::load` reads `HARDEN_*` variables (prefix
/// stripped, lower-cased, values parsed as figment parses environment values), without touching
/// this process's environment, which other tests read concurrently.
fn load_with(vars: &[(String, String)]) -> Result<(), String> {
    let mut figment = figment::Figment::new();
    for (name, value) in vars {
        let key = name.strip_prefix("HARDEN_").unwrap_or(name).to_lowercase();
        let value: figment::value::Value = value.parse().map_err(|e| format!("{e:?}"))?;
        figment = figment.merge((key, value));
    }
    figment.extract::<harden::Settings>().map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn every_harden_variable_in_the_deployment_files_is_a_real_setting() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["docker-compose.yml", "Dockerfile"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let vars = harden_variables(&text);
        assert!(vars.len() >= 3, "{file}: found only {vars:?}");
        // One service at a time: the same name may be set differently per service.
        let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, value) in &vars {
            by_name.entry(name).or_default().push(value);
        }
        for (name, values) in by_name {
            for value in values {
                let one = [(name.to_owned(), value.to_owned())];
                if let Err(e) = load_with(&one) {
                    panic!("{file}: {name}={value:?} is not a valid setting: {e}");
                }
            }
        }
    }
    // The shipped stack lets self-registered orgs point storage at its object store and nothing
    // else of its network (no switch for every private address: that would reach postgres, nats
    // and the Backend).
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let vars = harden_variables(&compose);
    assert!(
        vars.iter().any(|(n, v)| n == "HARDEN_STORAGE_ALLOWED_HOSTS" && v == "minio:9000"),
        "the stack lists its object store: {vars:?}"
    );
    assert!(
        !vars.iter().any(|(n, v)| n == "HARDEN_STORAGE_ALLOW_PRIVATE_NETWORKS" && v != "false"),
        "the stack must not allow every private address: {vars:?}"
    );
    assert!(load_with(&[("HARDEN_STORAGE_ALLOWED_HOSTS".into(), "minio".into())]).is_ok(), "a string setting");
    // The check itself refuses what it should.
    assert!(load_with(&[("HARDEN_NOT_A_SETTING".into(), "1".into())]).is_err());
    assert!(load_with(&[("HARDEN_STORAGE_ALLOW_PRIVATE_NETWORKS".into(), "maybe".into())]).is_err());
}

/// The image builds the whole workspace: every member crate is copied into the build stage (a
/// crate added to the workspace but not to the Dockerfile breaks `docker build`, which no test here
/// can run).
#[test]
fn the_dockerfile_copies_every_workspace_member() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Value = std::fs::read_to_string(root.join("Cargo.toml")).unwrap().parse().unwrap();
    let members = manifest["workspace"]["members"].as_array().unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(members.len() >= 7, "{members:?}");
    for member in members {
        let member = member.as_str().unwrap();
        assert!(
            dockerfile.lines().any(|l| l.trim() == format!("COPY {member} {member}")),
            "the Dockerfile does not copy the workspace member {member}"
        );
    }
}
