//! Registry credentials in docker's auth file format, so `docker login`,
//! `podman login` and `skopeo login` share them with us:
//! `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`, holding `{"auths": {"REGISTRY": {"auth":
//! base64("user:password")}}}`. Other keys in the file are kept.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Context, Error, Result};
use crate::reference::{api_host, DOCKER_HUB};
use crate::registry::Registry;
use crate::store::atomic_write;

#[derive(Clone, Debug, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The auth file this process reads and writes.
pub fn auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker/config.json")
}

/// The keys a registry may be stored under: docker writes Docker Hub as its
/// v1 URL and others sometimes with a scheme.
fn keys_for(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ]
}

fn load(path: &Path) -> Result<Map<String, Value>> {
    match std::fs::read(path) {
        Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(data) => serde_json::from_slice::<Value>(&data)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .ok_or_else(|| Error::Path(path.to_path_buf(), "not a JSON object".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).context(|| format!("read {}", path.display())),
    }
}

/// Credentials for `registry` from `path`, if any.
pub fn lookup_in(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let file = load(path)?;
    let Some(auths) = file.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    for key in keys_for(registry) {
        let Some(entry) = auths.get(&key) else {
            continue;
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| {
                    Error::Path(
                        path.to_path_buf(),
                        format!("auths.{key}.auth is not base64"),
                    )
                })?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (u, p) = raw.split_once(':').ok_or_else(|| {
                Error::Path(
                    path.to_path_buf(),
                    format!("auths.{key}.auth is not user:password"),
                )
            })?;
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
    }
    if file.contains_key("credsStore") || file.contains_key("credHelpers") {
        tracing::warn!(
            "{}: credential helpers are not supported; using no credentials for {registry}",
            path.display()
        );
    }
    Ok(None)
}

pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    lookup_in(&auth_file(), registry)
}

/// Stores credentials for `registry` (replacing any under its other keys).
pub fn store_in(path: &Path, registry: &str, c: &Credentials) -> Result<()> {
    let mut file = load(path)?;
    let auths = file
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| Error::Path(path.to_path_buf(), "auths is not an object".into()))?;
    let keys = keys_for(registry);
    for k in &keys {
        auths.remove(k);
    }
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    auths.insert(keys[0].clone(), serde_json::json!({ "auth": encoded }));
    write(path, &file)
}

/// Removes the credentials for `registry`; false if there were none.
pub fn remove_in(path: &Path, registry: &str) -> Result<bool> {
    let mut file = load(path)?;
    let mut found = false;
    if let Some(auths) = file.get_mut("auths").and_then(Value::as_object_mut) {
        for k in keys_for(registry) {
            found |= auths.remove(&k).is_some();
        }
    }
    if found {
        write(path, &file)?;
    }
    Ok(found)
}

/// The registry a user gave `login` or `logout` (a host, or a URL as
/// docker takes it) as credentials are kept for it.
pub fn registry_host(registry: &str) -> Result<String> {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(Error::Other(format!("invalid registry {registry:?}")));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.into(),
        other => other.to_string(),
    })
}

/// `login`: checks `credentials` against `registry`, then stores them in
/// the auth file; returns the registry as they are kept for it.
pub fn login(registry: &str, credentials: &Credentials, plain_http: bool) -> Result<String> {
    let host = registry_host(registry)?;
    Registry::new(api_host(&host), Some(credentials.clone()), plain_http).check_login()?;
    store_in(&auth_file(), &host, credentials)?;
    Ok(host)
}

/// `logout`: removes the stored credentials for `registry`; returns the
/// registry as they were kept for it.
pub fn logout(registry: &str) -> Result<String> {
    let host = registry_host(registry)?;
    if !remove_in(&auth_file(), &host)? {
        return Err(Error::Other(format!("not logged in to {host}")));
    }
    Ok(host)
}

fn write(path: &Path, file: &Map<String, Value>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(|| format!("create {}", dir.display()))?;
    }
    let mut data = serde_json::to_vec_pretty(file).expect("auth file serializes");
    data.push(b'\n');
    atomic_write(path, &data)?;
    // Passwords: owner only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .context(|| format!("chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_other_keys() {
        let dir = std::env::temp_dir().join(crate::store::unique_name("berth-img-auth-"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"other:5000":{"auth":"YTpi"}},"psFormat":"x"}"#,
        )
        .unwrap();
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store_in(&p, "127.0.0.1:5000", &c).unwrap();
        assert_eq!(lookup_in(&p, "127.0.0.1:5000").unwrap(), Some(c.clone()));
        assert_eq!(lookup_in(&p, "other:5000").unwrap().unwrap().username, "a");
        store_in(&p, DOCKER_HUB, &c).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("https://index.docker.io/v1/") && text.contains("psFormat"),
            "{text}"
        );
        assert!(remove_in(&p, "127.0.0.1:5000").unwrap());
        assert!(!remove_in(&p, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup_in(&p, "127.0.0.1:5000").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registry_hosts_as_docker_takes_them() {
        assert_eq!(registry_host("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(
            registry_host("https://quay.io/v2/").unwrap(),
            "quay.io".to_string()
        );
        assert_eq!(
            registry_host("https://index.docker.io/v1/").unwrap(),
            DOCKER_HUB
        );
        assert_eq!(registry_host("registry-1.docker.io").unwrap(), DOCKER_HUB);
        assert!(registry_host("https://").is_err());
    }
}
