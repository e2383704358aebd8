//! Cgroup placement (config-linux.md "Control groups").
//!
//! The layout is detected per hierarchy at run time from mountinfo: cgroup v1
//! controllers each at their own mount, a cgroup2 mount (the whole tree on a
//! v2 host, `/sys/fs/cgroup/unified` on a hybrid one), or both. A container
//! gets one directory per hierarchy; its processes join every one of them.
//! The host's hierarchies are never mounted, remounted or unmounted here.

pub mod resources;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// Where it is mounted in our mount namespace.
    pub mount_point: PathBuf,
    /// The cgroup path (as /proc/self/cgroup names it) at `mount_point`.
    pub mount_root: PathBuf,
    /// v1 controllers (`name=systemd` for named hierarchies); empty on cgroup2.
    pub controllers: Vec<String>,
    /// Our own cgroup in this hierarchy, for relative cgroupsPaths.
    pub own: PathBuf,
}

impl Hierarchy {
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The directory of cgroup `path` (absolute within the hierarchy).
    fn dir_of(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.mount_root).ok()?;
        Some(self.mount_point.join(rel))
    }
}

/// All cgroup hierarchies visible to berth.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    pub fn detect() -> Result<Layout> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::path("read", "/proc/self/mountinfo", e))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| Error::path("read", "/proc/self/cgroup", e))?;
        Ok(Layout::parse(&mountinfo, &own))
    }

    /// Pure parsing of /proc/self/mountinfo and /proc/self/cgroup.
    pub fn parse(mountinfo: &str, own_cgroups: &str) -> Layout {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for m in crate::mountinfo::parse(mountinfo) {
            let controllers: Vec<String> = match m.fstype.as_str() {
                "cgroup2" => Vec::new(),
                "cgroup" => m
                    .super_options
                    .split(',')
                    .filter(|o| is_controller_option(o))
                    .map(String::from)
                    .collect(),
                _ => continue,
            };
            if m.fstype == "cgroup" && controllers.is_empty() {
                continue;
            }
            // The same hierarchy may be mounted twice; the first mount wins.
            let dup = hierarchies.iter().any(|h| h.controllers == controllers);
            if dup {
                continue;
            }
            let own = own_path(own_cgroups, &controllers).unwrap_or_else(|| PathBuf::from("/"));
            hierarchies.push(Hierarchy {
                mount_point: m.mount_point,
                mount_root: m.root,
                controllers,
                own,
            });
        }
        Layout { hierarchies }
    }

    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.is_v2())
    }

    pub fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.has(controller))
    }

    /// A pure cgroup2 host: no v1 controller mounted at all.
    pub fn is_pure_v2(&self) -> bool {
        self.hierarchies.iter().all(Hierarchy::is_v2) && self.unified().is_some()
    }
}

fn is_controller_option(opt: &str) -> bool {
    const NOT_CONTROLLERS: &[&str] = &["rw", "ro", "xattr", "noprefix", "clone_children"];
    !NOT_CONTROLLERS.contains(&opt)
        && !opt.starts_with("release_agent=")
        && (!opt.contains('=') || opt.starts_with("name="))
}

/// Our cgroup in the hierarchy with these controllers, from /proc/self/cgroup.
fn own_path(own_cgroups: &str, controllers: &[String]) -> Option<PathBuf> {
    for line in own_cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controllers.is_empty() {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = controllers.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        if matches {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// How `linux.cgroupsPath` names the container's cgroup.
#[derive(Debug, PartialEq, Eq)]
pub enum CgroupsPath {
    /// Absolute within each hierarchy.
    Absolute(PathBuf),
    /// Relative to berth's own cgroup in each hierarchy (dockerd sends these).
    Relative(PathBuf),
    /// A systemd unit (`--systemd-cgroup`): its cgroup is systemd's.
    Systemd(systemd::UnitPath),
}

impl CgroupsPath {
    /// Interprets `cgroupsPath` as runc does; absent means `<id>` relative to
    /// our own cgroup (or the unit `berth-<id>.scope` with the systemd
    /// driver). Without the systemd driver a `slice:prefix:name` is a plain
    /// relative path, as runc's cgroupfs driver takes it (containerd sends
    /// that form for `*.slice` parents).
    pub fn parse(path: Option<&Path>, id: &str, systemd_driver: bool) -> Result<CgroupsPath> {
        if systemd_driver {
            let s = path.map(|p| p.to_string_lossy().into_owned());
            let mut unit = systemd::UnitPath::parse(s.as_deref(), id)?;
            if crate::rootless::unprivileged_on_host() {
                // A user manager's units live under its own cgroup.
                unit.manager_root = systemd::Manager::connect()?.control_group()?;
            }
            return Ok(CgroupsPath::Systemd(unit));
        }
        let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(CgroupsPath::Relative(PathBuf::from(id)));
        };
        let s = path.to_string_lossy();
        let clean = clean_path(path);
        if clean
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(Error::Config(format!(
                "linux.cgroupsPath {s:?}: must not contain '..'"
            )));
        }
        if path.is_absolute() {
            Ok(CgroupsPath::Absolute(clean))
        } else {
            Ok(CgroupsPath::Relative(clean))
        }
    }

    fn in_hierarchy(&self, h: &Hierarchy) -> Result<PathBuf> {
        Ok(match self {
            CgroupsPath::Absolute(p) => p.clone(),
            CgroupsPath::Relative(p) => h.own.join(p),
            CgroupsPath::Systemd(u) => u.cgroup()?,
        })
    }
}

/// Lexically cleans a path: drops `.` and empty components.
fn clean_path(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The container's cgroup: one directory per hierarchy.
#[derive(Clone, Debug, Default)]
pub struct Cgroup {
    pub paths: Vec<PathBuf>,
}

impl Cgroup {
    /// Resolves the container's directory in every hierarchy.
    pub fn resolve(layout: &Layout, path: &CgroupsPath) -> Result<Cgroup> {
        let mut paths = Vec::new();
        for h in &layout.hierarchies {
            let cg = path.in_hierarchy(h)?;
            let dir = h.dir_of(&cg).ok_or_else(|| {
                Error::Other(format!(
                    "cgroup {} is outside the hierarchy mounted at {}",
                    cg.display(),
                    h.mount_point.display()
                ))
            })?;
            paths.push(dir);
        }
        Ok(Cgroup { paths })
    }

    /// Creates the directories (or finds them, when joining an existing
    /// cgroup). Returns, per directory, whether berth made it and so owns it.
    pub fn create(&self, layout: &Layout) -> Result<Vec<bool>> {
        let mut owned = Vec::new();
        for (h, dir) in layout.hierarchies.iter().zip(&self.paths) {
            owned.push(mkdir_all(dir)?);
            if h.has("cpuset") {
                v1::init_cpuset(&h.mount_point, dir)?;
            }
        }
        Ok(owned)
    }

    /// Moves `pid` into the container's cgroup in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for dir in &self.paths {
            write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Applies the device allow-list of `linux.resources.devices`, exactly
    /// (plus runc's defaults), as the emulated result of its rules.
    pub fn apply_devices(&self, layout: &Layout, resources: Option<&LinuxResources>) -> Result<()> {
        let rules = crate::devices::cgroup_rules(resources);
        let target = crate::devices::Emulator::from_rules(&rules)?;
        if let Some(dir) = self.v1_dir(layout, "devices") {
            return v1::apply_devices(dir, &target);
        }
        if let Some(dir) = self.unified_dir(layout) {
            return v2::apply_devices(dir, &target.as_rules());
        }
        Ok(())
    }

    /// The container's directory in the first hierarchy `which` accepts.
    pub(crate) fn hierarchy_dir<'a>(
        &'a self,
        layout: &'a Layout,
        which: impl Fn(&Hierarchy) -> bool,
    ) -> Option<(&'a Hierarchy, &'a Path)> {
        layout
            .hierarchies
            .iter()
            .zip(&self.paths)
            .find(|(h, _)| which(h))
            .map(|(h, p)| (h, p.as_path()))
    }

    pub(crate) fn unified_dir<'a>(&'a self, layout: &'a Layout) -> Option<&'a Path> {
        self.hierarchy_dir(layout, Hierarchy::is_v2).map(|(_, p)| p)
    }

    pub(crate) fn v1_dir<'a>(&'a self, layout: &'a Layout, controller: &str) -> Option<&'a Path> {
        self.hierarchy_dir(layout, |h| h.has(controller))
            .map(|(_, p)| p)
    }

    /// Every PID in the container's cgroup.
    pub fn pids(&self, layout: &Layout) -> Vec<i32> {
        // Any hierarchy holds all of them; prefer the unified one (no
        // per-controller oddities), else pids/freezer/memory.
        let dir = self
            .unified_dir(layout)
            .or_else(|| self.v1_dir(layout, "pids"))
            .or_else(|| self.v1_dir(layout, "freezer"))
            .or_else(|| self.paths.first().map(PathBuf::as_path));
        let Some(dir) = dir else { return Vec::new() };
        read_procs(dir)
    }

    pub fn is_frozen(&self, layout: &Layout) -> bool {
        if let Some(dir) = self.v1_dir(layout, "freezer") {
            return v1::is_frozen(dir);
        }
        if let Some(dir) = self.unified_dir(layout) {
            return v2::is_frozen(dir);
        }
        false
    }

    /// Freezes (true) or thaws (false) the container's processes.
    pub fn freeze(&self, layout: &Layout, frozen: bool) -> Result<()> {
        if let Some(dir) = self.v1_dir(layout, "freezer") {
            return v1::freeze(dir, frozen);
        }
        if let Some(dir) = self.unified_dir(layout) {
            return v2::freeze(dir, frozen);
        }
        Err(Error::Unsupported(
            "pause: no freezer (cgroup v1 freezer or cgroup2 cgroup.freeze)".into(),
        ))
    }

    pub fn can_freeze(&self, layout: &Layout) -> bool {
        self.v1_dir(layout, "freezer").is_some()
            || self
                .unified_dir(layout)
                .is_some_and(|d| d.join("cgroup.freeze").exists())
    }

    /// Sends `signal` to every process in the cgroup. The cgroup is frozen
    /// meanwhile so that a forking process cannot slip a child past us.
    pub fn signal_all(&self, layout: &Layout, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL {
            if let Some(dir) = self.unified_dir(layout) {
                if v2::kill(dir).is_ok() {
                    return Ok(());
                }
            }
        }
        let freeze = self.can_freeze(layout) && !self.is_frozen(layout);
        if freeze {
            self.freeze(layout, true)?;
        }
        for pid in self.pids(layout) {
            // SAFETY: kill(2) with a pid read from the cgroup.
            unsafe { libc::kill(pid, signal) };
        }
        if freeze {
            self.freeze(layout, false)?;
        }
        Ok(())
    }

    /// Removes the cgroup directories berth made (`owned`, per path), nested
    /// ones first, waiting briefly for exiting processes to leave.
    pub fn remove(&self, owned: &[bool]) -> Result<()> {
        for (dir, owned) in self.paths.iter().zip(owned) {
            if *owned {
                remove_tree(dir)?;
            }
        }
        Ok(())
    }
}

fn read_procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// mkdir -p; returns whether the leaf was created by us.
fn mkdir_all(dir: &Path) -> Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                mkdir_all(parent)?;
            }
            match fs::create_dir(dir) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::path("create cgroup", dir, e)),
            }
        }
        Err(e) => Err(Error::path("create cgroup", dir, e)),
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::path("read cgroup", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // A process that was just killed leaves its cgroup a moment after it
    // dies; on a loaded or emulated machine that moment can last seconds
    // (runc waits too). Quick retries first, so the usual case stays fast.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut delay = std::time::Duration::from_micros(200);
    while std::time::Instant::now() < deadline {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(Error::path("remove cgroup", dir, e)),
        }
    }
    Err(Error::path(
        "remove cgroup",
        dir,
        std::io::Error::from_raw_os_error(libc::EBUSY),
    ))
}

/// Writes a cgroup control file (no truncation or creation: these are kernel files).
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::path("open", path, e))?;
    f.write_all(value.as_bytes()).map_err(|e| Error::Sys {
        what: format!("write {value:?} to {}", path.display()),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    const HYBRID_CGROUP: &str = "9:name=systemd:/\n4:memory:/a/b\n1:cpu:/\n0::/\n";

    #[test]
    fn parses_hybrid_layout() {
        let l = Layout::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        assert_eq!(l.hierarchies.len(), 4);
        assert!(l.v1("memory").is_some());
        assert_eq!(l.v1("memory").unwrap().own, PathBuf::from("/a/b"));
        assert_eq!(
            l.v1("name=systemd").unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/systemd")
        );
        assert_eq!(
            l.unified().unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert!(!l.is_pure_v2());
    }

    #[test]
    fn parses_pure_v2_layout() {
        let l = Layout::parse(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/user.slice\n",
        );
        assert!(l.is_pure_v2());
        assert_eq!(l.unified().unwrap().own, PathBuf::from("/user.slice"));
    }

    #[test]
    fn cgroups_path_forms() {
        let layout = Layout::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let abs = CgroupsPath::parse(Some(Path::new("/x/y")), "id", false).unwrap();
        let rel = CgroupsPath::parse(Some(Path::new("x/./y")), "id", false).unwrap();
        let def = CgroupsPath::parse(None, "id", false).unwrap();
        assert_eq!(def, CgroupsPath::Relative("id".into()));
        let a = Cgroup::resolve(&layout, &abs).unwrap();
        let r = Cgroup::resolve(&layout, &rel).unwrap();
        assert_eq!(a.paths[1], PathBuf::from("/sys/fs/cgroup/memory/x/y"));
        assert_eq!(r.paths[1], PathBuf::from("/sys/fs/cgroup/memory/a/b/x/y"));
        assert_eq!(r.paths[3], PathBuf::from("/sys/fs/cgroup/unified/x/y"));
        // containerd's form for a *.slice parent, under cgroupfs: a name.
        let slice = CgroupsPath::parse(
            Some(Path::new("test.slice:cri-containerd:abc")),
            "id",
            false,
        )
        .unwrap();
        assert_eq!(
            slice,
            CgroupsPath::Relative("test.slice:cri-containerd:abc".into())
        );
        let unit = CgroupsPath::parse(Some(Path::new("test.slice:cri-containerd:abc")), "id", true)
            .unwrap();
        let c = Cgroup::resolve(&layout, &unit).unwrap();
        assert_eq!(
            c.paths[1],
            PathBuf::from("/sys/fs/cgroup/memory/test.slice/cri-containerd-abc.scope")
        );
        assert!(CgroupsPath::parse(Some(Path::new("/a/../../b")), "id", false).is_err());
    }

    #[test]
    fn nested_mount_root() {
        let l = Layout::parse(
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "4:memory:/docker/abc\n",
        );
        let cg = Cgroup::resolve(&l, &CgroupsPath::Relative("c1".into())).unwrap();
        assert_eq!(cg.paths[0], PathBuf::from("/sys/fs/cgroup/memory/c1"));
    }
}
