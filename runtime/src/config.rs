//! Reading a bundle's config.json (runtime-spec config.md).
//!
//! Liberal in what we accept: any 1.x `ociVersion` (pre-releases too),
//! unknown properties ignored, capability names this build does not know
//! dropped with a warning (as runc does). Strict in what we run: a known
//! property with the wrong type is an error that names the property's path.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::Value;

use crate::error::{Error, Result};

/// A parsed config.json together with the bundle it came from.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// The config as the caller wrote it, kept in the container's state so
    /// later commands (exec, delete's poststop hooks) see the same config even
    /// if the bundle changes.
    pub raw: Value,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::path::absolute(dir).map_err(|e| Error::path("resolve bundle", dir, e))?;
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::path("read", &path, e))?;
        let raw: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let spec = parse_spec(raw.clone())
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(Bundle { dir, spec, raw })
    }

    /// The rootfs path, resolved against the bundle directory when relative.
    pub fn rootfs(&self) -> Result<PathBuf> {
        let root = self
            .spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Config("root: required".into()))?;
        Ok(self.dir.join(root.path()))
    }
}

/// Turns a config JSON value into a typed spec, checking the version and
/// sanitizing what real callers send.
pub fn parse_spec(mut raw: Value) -> std::result::Result<Spec, String> {
    if !raw.is_object() {
        return Err("config must be a JSON object".into());
    }
    check_version(&raw)?;
    drop_unknown_capabilities(&mut raw);
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

fn check_version(raw: &Value) -> std::result::Result<(), String> {
    match raw.get("ociVersion") {
        None => Err("ociVersion: required".into()),
        Some(Value::String(v)) => {
            let major = v.split(['.', '-', '+']).next().unwrap_or("");
            if major == "1" {
                Ok(())
            } else {
                Err(format!("ociVersion: unsupported version {v:?} (want 1.x)"))
            }
        }
        Some(_) => Err("ociVersion: invalid type, expected a string".into()),
    }
}

/// Newer profiles name capabilities that this build (or kernel) does not
/// know; runc ignores those with a warning rather than refusing the config.
fn drop_unknown_capabilities(raw: &mut Value) {
    let Some(caps) = raw
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut unknown = Vec::new();
    for list in caps.values_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        list.retain(|cap| {
            let Some(name) = cap.as_str() else {
                return true;
            };
            let known =
                serde_json::from_value::<oci_spec::runtime::Capability>(cap.clone()).is_ok();
            if !known {
                unknown.push(name.to_string());
            }
            known
        });
    }
    crate::capabilities::warn_ignored(unknown);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_any_1x_version() {
        for v in ["1.0.0", "1.0.2-dev", "1.3.0", "1.2.0-rc.1"] {
            parse_spec(json!({"ociVersion": v})).unwrap();
        }
    }

    #[test]
    fn refuses_other_majors() {
        let e = parse_spec(json!({"ociVersion": "2.0.0"})).unwrap_err();
        assert!(e.contains("ociVersion"), "{e}");
        let e = parse_spec(json!({"ociVersion": 1})).unwrap_err();
        assert!(e.contains("ociVersion"), "{e}");
        assert!(parse_spec(json!({})).unwrap_err().contains("ociVersion"));
    }

    #[test]
    fn ignores_unknown_properties() {
        let spec = parse_spec(json!({
            "ociVersion": "1.0.2",
            "someFutureThing": {"x": 1},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "newField": true}
        }))
        .unwrap();
        assert_eq!(spec.process().as_ref().unwrap().cwd().to_str(), Some("/"));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = parse_spec(json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": "root", "gid": 0}}
        }))
        .unwrap_err();
        assert!(e.starts_with("process.user.uid"), "{e}");
    }

    #[test]
    fn unknown_capabilities_are_dropped() {
        let spec = parse_spec(json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_KILL", "CAP_FROM_THE_FUTURE"]}}
        }))
        .unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
    }
}
