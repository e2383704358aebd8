//! Volumes, as docker's `local` driver keeps them, and the mount flags
//! that use them (`-v`, `--mount`):
//!
//! ```text
//! ROOT/volumes/.lock              shared by container creation, exclusive
//!                                 for rm and prune (usage cannot change
//!                                 under them)
//! ROOT/volumes/NAME/volume.json   name, creation time, labels, anonymous
//! ROOT/volumes/NAME/_data/        what containers mount
//! ROOT/volumes/NAME/lock          held while an empty volume is filled
//! ```
//!
//! A volume appears whole: it is made under a temporary name and renamed
//! into place, so concurrent creators of one name agree on one volume. An
//! empty volume is filled from the image's content at the mount path the
//! first time a container mounts it (owner and mode included), as docker
//! does. Which containers use a volume is read from their records
//! (`container.json`'s docker-shaped `mounts`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::build::copy::{self as copying, CopyOptions, Source};
use crate::bundle::BindMount;
use crate::error::{Context, Error, Result};
use crate::inroot::{self, Root};

/// `volume.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for an image's VOLUME or a `-v /path` without a name; `rm -v`
    /// and a plain `volume prune` remove these.
    #[serde(default)]
    pub anonymous: bool,
    /// Where its data is (not stored: it follows the store).
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Volume {
    /// `docker volume inspect`'s shape.
    pub fn to_docker(&self) -> Value {
        let mut labels = self.labels.clone();
        if self.anonymous {
            labels.insert("com.docker.volume.anonymous".into(), String::new());
        }
        json!({
            "CreatedAt": self.created_at,
            "Driver": "local",
            "Labels": labels,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": {},
            "Scope": "local",
        })
    }
}

/// docker's rule for volume names: two or more of `[a-zA-Z0-9_.-]`,
/// starting with a letter or digit.
pub fn valid_name(n: &str) -> bool {
    n.len() >= 2 && crate::network::valid_name(n)
}

/// The volumes of one store.
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn new(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where volume `name`'s data lives.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.path(name).join("_data")
    }

    /// The lock that orders volume removal against container creation:
    /// `exclusive` for rm and prune.
    pub fn lock(&self, exclusive: bool) -> Result<Flock<File>> {
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        crate::store::lock_file(&self.dir.join(".lock"), arg)
    }

    /// Volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(Error::NotFound(format!("volume {name}")));
        }
        let p = self.path(name).join("volume.json");
        let data = fs::read(&p).map_err(|_| Error::NotFound(format!("volume {name}")))?;
        let mut v: Volume =
            serde_json::from_slice(&data).map_err(|e| Error::Path(p, format!("corrupt: {e}")))?;
        v.mountpoint = self.data_dir(name);
        Ok(v)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.get(n).ok()).collect()
    }

    /// Makes volume `name` (a random one when None) unless it exists, as
    /// `docker volume create` does; returns it and whether it is new.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool)> {
        let name = match name {
            Some(n) if !valid_name(n) => {
                return Err(Error::invalid(
                    "volume name",
                    format!("{n:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]+"),
                ))
            }
            Some(n) => n.to_string(),
            None => crate::digest::Digest::sha256_of(crate::store::unique_name("vol").as_bytes())
                .hex()
                .to_string(),
        };
        if let Ok(v) = self.get(&name) {
            return Ok((v, false));
        }
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        let tmp = self.dir.join(crate::store::unique_name(".tmp-"));
        let made = (|| -> Result<()> {
            fs::create_dir(&tmp).context(|| format!("create {}", tmp.display()))?;
            let data = tmp.join("_data");
            fs::create_dir(&data).context(|| format!("create {}", data.display()))?;
            let v = Volume {
                name: name.clone(),
                created_at: crate::pull::now_rfc3339(),
                labels: labels.clone(),
                anonymous,
                mountpoint: PathBuf::new(),
            };
            crate::store::atomic_write(
                &tmp.join("volume.json"),
                &serde_json::to_vec_pretty(&v).expect("JSON"),
            )
        })();
        let renamed = made.and_then(|()| {
            fs::rename(&tmp, self.path(&name)).context(|| format!("create volume {name}"))
        });
        match renamed {
            Ok(()) => Ok((self.get(&name)?, true)),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                // Another command made it first: that one is the volume.
                match self.get(&name) {
                    Ok(v) => Ok((v, false)),
                    Err(_) => Err(e),
                }
            }
        }
    }

    /// Removes volume `name`. The caller holds the exclusive lock and has
    /// checked that no container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        // Renamed away first, so a half-removed volume is never seen.
        let doomed = self.dir.join(crate::store::unique_name(".rm-"));
        fs::rename(self.path(name), &doomed).context(|| format!("remove volume {name}"))?;
        fs::remove_dir_all(&doomed).context(|| format!("remove {}", doomed.display()))
    }

    /// Removes what interrupted creations and removals left (`.tmp-*`,
    /// `.rm-*`). The caller holds the exclusive lock.
    pub fn remove_debris(&self) {
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".tmp-") || n.starts_with(".rm-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Bytes under a volume's data, for prune's report.
    pub fn size(&self, name: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(m) = fs::symlink_metadata(p) else {
                return 0;
            };
            if m.is_dir() {
                fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| walk(&e.path()))
                    .sum()
            } else {
                m.len()
            }
        }
        walk(&self.data_dir(name))
    }
}

/// Fills the empty volume at `volume_dir` from what the image has at
/// `destination` (resolved inside `rootfs`): its tree, owners and modes,
/// and the directory's own owner and mode, as docker does on first mount.
/// Nothing happens when the volume holds anything or the image has no
/// directory there.
pub fn fill_from_image(volume_dir: &Path, rootfs: &Path, destination: &str) -> Result<()> {
    let _lock = crate::store::lock_file(&volume_dir.join("lock"), FlockArg::LockExclusive)?;
    let data = volume_dir.join("_data");
    let empty = fs::read_dir(&data)
        .context(|| format!("read {}", data.display()))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let root = Root::open(rootfs).map_err(|e| Error::Path(rootfs.into(), e.to_string()))?;
    let rel = inroot::clean(Path::new(destination));
    let Ok(dir) = root.open_at(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY) else {
        return Ok(());
    };
    let source = Source {
        root: rootfs.to_path_buf(),
        ignore: None,
        label: "image".into(),
    };
    copying::copy(
        &source,
        std::slice::from_ref(&rel),
        &data,
        "/",
        &CopyOptions {
            uid: 0,
            gid: 0,
            chmod: None,
            keep_owner: true,
        },
    )?;
    let st = nix::sys::stat::fstat(&dir).context(|| format!("stat {destination} in the image"))?;
    nix::unistd::chown(&data, Some(st.st_uid.into()), Some(st.st_gid.into()))
        .context(|| format!("chown {}", data.display()))?;
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &data,
        nix::sys::stat::Mode::from_bits_truncate(st.st_mode & 0o7777),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .context(|| format!("chmod {}", data.display()))
}

/// What a mount flag asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named volume, or an anonymous one when the name is empty.
    Volume,
    Tmpfs,
}

/// One `-v` or `--mount` (or an image's VOLUME), parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountRequest {
    pub kind: MountKind,
    /// The host path (absolute) or the volume's name ("" for anonymous).
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// `rprivate` unless asked (`shared`, `rslave`, ...).
    pub propagation: Option<String>,
    /// Do not fill an empty volume from the image.
    pub nocopy: bool,
    /// `-v` makes a missing host directory; `--mount` refuses it.
    pub create_host_path: bool,
    /// tmpfs options: `size=`, `mode=`.
    pub tmpfs_options: Vec<String>,
    /// The flag (`--volume`, `--mount`, `VOLUME`) and its value as given,
    /// for errors.
    pub option: &'static str,
    pub flag: String,
}

const PROPAGATIONS: &[&str] = &[
    "shared", "slave", "private", "rshared", "rslave", "rprivate",
];

fn absolute(p: &str, cwd: &Path) -> String {
    // components() drops the `.` parts.
    cwd.join(p)
        .components()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned()
}

/// Parses `-v`: `SRC:DST[:OPTS]` where SRC is a host path (absolute, or
/// `./`-relative to `cwd`) or a volume name, or just `DST` (an anonymous
/// volume). OPTS: `ro`, `rw`, `nocopy`, a propagation, `z`/`Z` (ignored,
/// no SELinux here).
pub fn parse_volume_flag(v: &str, cwd: &Path) -> Result<MountRequest> {
    let bad = |why: &str| Error::invalid("--volume", format!("{v:?}: {why}"));
    let parts: Vec<&str> = v.split(':').collect();
    let (source, destination, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(bad("want [SRC:]DST[:OPTIONS]")),
    };
    if !destination.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let (kind, source) = if source.is_empty() {
        (MountKind::Volume, String::new())
    } else if source.starts_with('/') {
        (MountKind::Bind, source.to_string())
    } else if source == "."
        || source == ".."
        || source.starts_with("./")
        || source.starts_with("../")
    {
        (MountKind::Bind, absolute(source, cwd))
    } else if valid_name(source) {
        (MountKind::Volume, source.to_string())
    } else {
        return Err(bad(&format!(
            "{source:?} is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        )));
    };
    let mut m = MountRequest {
        kind,
        source,
        destination: destination.to_string(),
        read_only: false,
        propagation: None,
        nocopy: false,
        create_host_path: true,
        tmpfs_options: Vec::new(),
        option: "--volume",
        flag: v.to_string(),
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.read_only = true,
            "rw" | "z" | "Z" => {}
            "nocopy" => m.nocopy = true,
            p if PROPAGATIONS.contains(&p) => m.propagation = Some(p.to_string()),
            other => return Err(bad(&format!("unknown option {other:?}"))),
        }
    }
    Ok(m)
}

fn flag_bool(key: &str, value: Option<&str>, flag: &str) -> Result<bool> {
    match value {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        Some(other) => Err(Error::invalid(
            "--mount",
            format!("{flag:?}: {key}={other:?}: want true or false"),
        )),
    }
}

/// Parses `--mount`: comma-separated `key=value` fields, docker's keys:
/// `type` (volume, bind, tmpfs), `source`/`src`, `destination`/`dst`/
/// `target`, `readonly`/`ro`, `volume-nocopy`, `bind-propagation`,
/// `tmpfs-size`, `tmpfs-mode`.
pub fn parse_mount_flag(v: &str) -> Result<MountRequest> {
    let bad = |why: String| Error::invalid("--mount", format!("{v:?}: {why}"));
    let mut kind = None;
    let mut m = MountRequest {
        kind: MountKind::Volume,
        source: String::new(),
        destination: String::new(),
        read_only: false,
        propagation: None,
        nocopy: false,
        create_host_path: false,
        tmpfs_options: Vec::new(),
        option: "--mount",
        flag: v.to_string(),
    };
    for field in v.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, val)) => (k, Some(val)),
            None => (field, None),
        };
        let value_of = || {
            value
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{key} needs a value")))
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                kind = Some(match value_of()?.as_str() {
                    "volume" => MountKind::Volume,
                    "bind" => MountKind::Bind,
                    "tmpfs" => MountKind::Tmpfs,
                    other => {
                        return Err(bad(format!("type={other:?}: want volume, bind or tmpfs")))
                    }
                })
            }
            "source" | "src" => m.source = value_of()?,
            "destination" | "dst" | "target" => m.destination = value_of()?,
            "readonly" | "ro" => m.read_only = flag_bool(key, value, v)?,
            "volume-nocopy" => m.nocopy = flag_bool(key, value, v)?,
            "bind-propagation" => {
                let p = value_of()?;
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(bad(format!(
                        "bind-propagation={p:?}: want one of {}",
                        PROPAGATIONS.join(", ")
                    )));
                }
                m.propagation = Some(p);
            }
            "tmpfs-size" => {
                let s = value_of()?;
                let bytes = crate::bundle::parse_bytes(&s)
                    .map_err(|_| bad(format!("tmpfs-size={s:?}: want a size like 64m")))?;
                m.tmpfs_options.push(format!("size={bytes}"));
            }
            "tmpfs-mode" => {
                let s = value_of()?;
                u32::from_str_radix(&s, 8)
                    .map_err(|_| bad(format!("tmpfs-mode={s:?}: want an octal mode")))?;
                m.tmpfs_options.push(format!("mode={s}"));
            }
            other => return Err(bad(format!("unknown key {other:?}"))),
        }
    }
    m.kind = kind.ok_or_else(|| bad("type= is required".into()))?;
    if !m.destination.starts_with('/') {
        return Err(bad("destination= must be an absolute path".into()));
    }
    match m.kind {
        MountKind::Bind if !m.source.starts_with('/') => {
            return Err(bad(
                "source= must be an absolute host path for type=bind".into()
            ))
        }
        MountKind::Volume if !m.source.is_empty() && !valid_name(&m.source) => {
            return Err(bad(format!("source={:?} is not a volume name", m.source)))
        }
        MountKind::Tmpfs if !m.source.is_empty() => {
            return Err(bad("type=tmpfs takes no source".into()))
        }
        _ => {}
    }
    if m.kind != MountKind::Tmpfs && !m.tmpfs_options.is_empty() {
        return Err(bad("tmpfs-size and tmpfs-mode are for type=tmpfs".into()));
    }
    Ok(m)
}

/// A mount as `docker inspect` lists it in `Mounts`, and as
/// `container.json` records it (volume usage is read from these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

/// The volumes the records `mounts` use, by name.
pub fn volumes_used<'a>(mounts: impl IntoIterator<Item = &'a MountPoint>) -> Vec<String> {
    mounts
        .into_iter()
        .filter(|m| m.kind == "volume")
        .filter_map(|m| m.name.clone())
        .collect()
}

/// Mount requests turned into what a bundle mounts.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub binds: Vec<BindMount>,
    /// `DST[:OPTIONS]`, as `--tmpfs` takes them.
    pub tmpfs: Vec<String>,
    /// The container's record of them (docker's `Mounts`).
    pub mounts: Vec<MountPoint>,
    /// Anonymous volumes made for this container.
    pub anonymous: Vec<String>,
    /// Named volumes made because a flag named them.
    pub created: Vec<String>,
}

/// Resolves `requests` and the image's VOLUME paths (`image_volumes`, each
/// an anonymous volume unless a request mounts something there) into
/// bind mounts: host paths as given (`-v` makes a missing one), volumes by
/// their data directory, made when missing. Without `volumes` (a bundle
/// made outside `run`, whose volumes nothing would track) only binds and
/// tmpfs are allowed and image volumes are not mounted.
pub fn resolve(
    requests: &[MountRequest],
    image_volumes: &[String],
    volumes: Option<&Volumes>,
) -> Result<Resolved> {
    let mut out = Resolved::default();
    let mut covered: Vec<PathBuf> = Vec::new();
    let mut all: Vec<MountRequest> = requests.to_vec();
    for dest in image_volumes {
        let clean = inroot::clean(Path::new(dest));
        if volumes.is_some()
            && !requests
                .iter()
                .any(|r| inroot::clean(Path::new(&r.destination)) == clean)
        {
            all.push(MountRequest {
                kind: MountKind::Volume,
                source: String::new(),
                destination: format!("/{}", clean.display()),
                read_only: false,
                propagation: None,
                nocopy: false,
                create_host_path: false,
                tmpfs_options: Vec::new(),
                option: "VOLUME",
                flag: format!("VOLUME {dest}"),
            });
        }
    }
    // Every check before anything is made.
    for r in &all {
        let clean = inroot::clean(Path::new(&r.destination));
        if covered.contains(&clean) {
            return Err(Error::invalid(
                r.option,
                format!("{:?}: duplicate mount point {}", r.flag, r.destination),
            ));
        }
        covered.push(clean);
        if r.kind == MountKind::Volume && volumes.is_none() {
            return Err(Error::invalid(
                r.option,
                format!(
                    "{:?}: volumes are for `run` (a bundle does not track them); bind a host path",
                    r.flag
                ),
            ));
        }
    }
    for r in &all {
        match r.kind {
            MountKind::Tmpfs => {
                let mut o = r.tmpfs_options.clone();
                if r.read_only {
                    o.push("ro".into());
                }
                out.tmpfs.push(if o.is_empty() {
                    r.destination.clone()
                } else {
                    format!("{}:{}", r.destination, o.join(","))
                });
                out.mounts.push(MountPoint {
                    kind: "tmpfs".into(),
                    name: None,
                    source: String::new(),
                    destination: r.destination.clone(),
                    driver: None,
                    mode: String::new(),
                    rw: !r.read_only,
                    propagation: String::new(),
                });
            }
            MountKind::Bind => {
                let source = PathBuf::from(&r.source);
                if !source.exists() {
                    // `bundle` makes nothing on the host.
                    if !r.create_host_path || volumes.is_none() {
                        return Err(Error::invalid(
                            r.option,
                            format!(
                                "{:?}: bind source path does not exist: {}",
                                r.flag, r.source
                            ),
                        ));
                    }
                    fs::create_dir_all(&source)
                        .context(|| format!("create {}", source.display()))?;
                }
                let propagation = r.propagation.clone().unwrap_or_else(|| "rprivate".into());
                out.binds.push(BindMount {
                    source,
                    destination: r.destination.clone(),
                    read_only: r.read_only,
                    propagation: Some(propagation.clone()),
                    fill_volume: None,
                });
                out.mounts.push(MountPoint {
                    kind: "bind".into(),
                    name: None,
                    source: r.source.clone(),
                    destination: r.destination.clone(),
                    driver: None,
                    mode: if r.read_only {
                        "ro".into()
                    } else {
                        String::new()
                    },
                    rw: !r.read_only,
                    propagation,
                });
            }
            MountKind::Volume => {
                let vols = volumes.expect("checked above");
                let anonymous = r.source.is_empty();
                let name = (!anonymous).then_some(r.source.as_str());
                let (v, new) = vols.create(name, &BTreeMap::new(), anonymous)?;
                if anonymous {
                    out.anonymous.push(v.name.clone());
                } else if new {
                    out.created.push(v.name.clone());
                }
                out.binds.push(BindMount {
                    source: v.mountpoint.clone(),
                    destination: r.destination.clone(),
                    read_only: r.read_only,
                    propagation: r.propagation.clone(),
                    fill_volume: (!r.nocopy).then(|| vols.path(&v.name)),
                });
                out.mounts.push(MountPoint {
                    kind: "volume".into(),
                    name: Some(v.name.clone()),
                    source: v.mountpoint.to_string_lossy().into_owned(),
                    destination: r.destination.clone(),
                    driver: Some("local".into()),
                    mode: if r.read_only { "ro".into() } else { "z".into() },
                    rw: !r.read_only,
                    propagation: String::new(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flag_forms() {
        let cwd = Path::new("/work");
        let m = parse_volume_flag("data:/var/lib/data:ro,nocopy", cwd).unwrap();
        assert_eq!(
            (m.kind.clone(), m.source.as_str()),
            (MountKind::Volume, "data")
        );
        assert!(m.read_only && m.nocopy && m.create_host_path);
        let m = parse_volume_flag("/srv:/srv:rshared", cwd).unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert_eq!(m.propagation.as_deref(), Some("rshared"));
        assert_eq!(
            parse_volume_flag("./site:/www", cwd).unwrap().source,
            "/work/site"
        );
        let m = parse_volume_flag("/cache", cwd).unwrap();
        assert_eq!((m.kind, m.source.as_str()), (MountKind::Volume, ""));
        for (v, want) in [
            ("data:rel", "must be absolute"),
            ("a:/x", "neither an absolute host path nor a volume name"),
            ("data:/x:rx", "unknown option \"rx\""),
            ("a:b:c:d", "want [SRC:]DST"),
        ] {
            let e = parse_volume_flag(v, cwd).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid --volume: ") && e.contains(v) && e.contains(want),
                "{e}"
            );
        }
    }

    #[test]
    fn mount_flag_forms() {
        let m = parse_mount_flag("type=volume,src=data,dst=/data,readonly").unwrap();
        assert_eq!(
            (m.kind.clone(), m.source.as_str(), m.destination.as_str()),
            (MountKind::Volume, "data", "/data")
        );
        assert!(m.read_only && !m.create_host_path);
        let m = parse_mount_flag(
            "type=bind,source=/etc,target=/host-etc,ro=false,bind-propagation=rslave",
        )
        .unwrap();
        assert!(!m.read_only);
        assert_eq!(m.propagation.as_deref(), Some("rslave"));
        let m =
            parse_mount_flag("type=tmpfs,destination=/run,tmpfs-size=1m,tmpfs-mode=1777").unwrap();
        assert_eq!(m.tmpfs_options, ["size=1048576", "mode=1777"]);
        assert_eq!(
            parse_mount_flag("type=volume,dst=/anon").unwrap().source,
            ""
        );
        for (v, want) in [
            ("type=nfs,dst=/x", "type=\"nfs\""),
            ("src=a,dst=/x", "type= is required"),
            ("type=bind,src=rel,dst=/x", "absolute host path"),
            (
                "type=volume,src=data,dst=x",
                "destination= must be an absolute path",
            ),
            (
                "type=volume,src=data,dst=/x,readonly=maybe",
                "readonly=\"maybe\"",
            ),
            (
                "type=volume,src=data,dst=/x,colour=red",
                "unknown key \"colour\"",
            ),
            ("type=tmpfs,src=x,dst=/x", "takes no source"),
            ("type=volume,dst=/x,tmpfs-size=1m", "are for type=tmpfs"),
            (
                "type=bind,src=/a,dst=/x,bind-propagation=up",
                "bind-propagation=\"up\"",
            ),
        ] {
            let e = parse_mount_flag(v).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid --mount: ") && e.contains(want),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("data") && valid_name("my_vol.1-a"));
        assert!(!valid_name("a") && !valid_name("-x") && !valid_name("a/b") && !valid_name(""));
    }

    #[test]
    fn docker_shapes() {
        let v = Volume {
            name: "data".into(),
            created_at: "2024-01-01T00:00:00Z".into(),
            labels: [("k".to_string(), "v".to_string())].into(),
            anonymous: false,
            mountpoint: "/var/lib/berth/volumes/data/_data".into(),
        };
        assert_eq!(
            v.to_docker(),
            json!({
                "CreatedAt": "2024-01-01T00:00:00Z", "Driver": "local", "Labels": {"k": "v"},
                "Mountpoint": "/var/lib/berth/volumes/data/_data", "Name": "data",
                "Options": {}, "Scope": "local"
            })
        );
        let m = MountPoint {
            kind: "volume".into(),
            name: Some("data".into()),
            source: "/s".into(),
            destination: "/d".into(),
            driver: Some("local".into()),
            mode: "z".into(),
            rw: true,
            propagation: String::new(),
        };
        let j = serde_json::to_value(&m).unwrap();
        assert_eq!(j["Type"], "volume");
        assert_eq!(j["RW"], true);
        assert_eq!(volumes_used([&m]), ["data"]);
    }
}
