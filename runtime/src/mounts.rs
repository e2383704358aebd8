//! Mounts (config.md "Mounts", config-linux.md "Mounts", "Masked Paths",
//! "Readonly Paths").

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use crate::cgroups::{Cgroup, Layout};
use crate::error::{Context, Error, Result};
use crate::rootfs::{fd_path, Root};
use crate::sys::{self, MountAttr};

/// A mount's `options`, split the way mount(2) and mount_setattr(2) want them.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    /// Propagation changes, applied after the mount in the order given.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid`, ...) for mount_setattr.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Filesystem-specific options (`mode=755`, `size=64k`), passed as data.
    pub data: Vec<String>,
    /// crun/runc's `tmpcopyup`: a tmpfs starts with the directory's contents.
    pub tmpcopyup: bool,
    /// `idmap`/`ridmap`: an idmapped mount (recursively for `ridmap`).
    pub idmap: bool,
    pub ridmap: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            attr_set: 0,
            attr_clr: 0,
            data: Vec::new(),
            tmpcopyup: false,
            idmap: false,
            ridmap: false,
        }
    }
}

impl Options {
    pub fn parse(options: &[String]) -> Options {
        let mut o = Options::default();
        for opt in options {
            let set = |o: &mut Options, f| o.flags.insert(f);
            let clr = |o: &mut Options, f| o.flags.remove(f);
            match opt.as_str() {
                "defaults" => {}
                "ro" => set(&mut o, MsFlags::MS_RDONLY),
                "rw" => clr(&mut o, MsFlags::MS_RDONLY),
                "bind" => set(&mut o, MsFlags::MS_BIND),
                "rbind" => set(&mut o, MsFlags::MS_BIND | MsFlags::MS_REC),
                "nosuid" => set(&mut o, MsFlags::MS_NOSUID),
                "suid" => clr(&mut o, MsFlags::MS_NOSUID),
                "nodev" => set(&mut o, MsFlags::MS_NODEV),
                "dev" => clr(&mut o, MsFlags::MS_NODEV),
                "noexec" => set(&mut o, MsFlags::MS_NOEXEC),
                "exec" => clr(&mut o, MsFlags::MS_NOEXEC),
                "sync" => set(&mut o, MsFlags::MS_SYNCHRONOUS),
                "async" => clr(&mut o, MsFlags::MS_SYNCHRONOUS),
                "dirsync" => set(&mut o, MsFlags::MS_DIRSYNC),
                "remount" => set(&mut o, MsFlags::MS_REMOUNT),
                "mand" => set(&mut o, MsFlags::MS_MANDLOCK),
                "nomand" => clr(&mut o, MsFlags::MS_MANDLOCK),
                "atime" => clr(&mut o, MsFlags::MS_NOATIME),
                "noatime" => set(&mut o, MsFlags::MS_NOATIME),
                "diratime" => clr(&mut o, MsFlags::MS_NODIRATIME),
                "nodiratime" => set(&mut o, MsFlags::MS_NODIRATIME),
                "relatime" => set(&mut o, MsFlags::MS_RELATIME),
                "norelatime" => clr(&mut o, MsFlags::MS_RELATIME),
                "strictatime" => set(&mut o, MsFlags::MS_STRICTATIME),
                "nostrictatime" => clr(&mut o, MsFlags::MS_STRICTATIME),
                "iversion" => set(&mut o, MsFlags::MS_I_VERSION),
                "noiversion" => clr(&mut o, MsFlags::MS_I_VERSION),
                "lazytime" => set(&mut o, MsFlags::MS_LAZYTIME),
                "nolazytime" => clr(&mut o, MsFlags::MS_LAZYTIME),
                "silent" => set(&mut o, MsFlags::MS_SILENT),
                "loud" => clr(&mut o, MsFlags::MS_SILENT),
                "nosymfollow" => set(&mut o, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
                "symfollow" => clr(&mut o, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
                "private" => o.propagation.push(MsFlags::MS_PRIVATE),
                "rprivate" => o.propagation.push(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
                "shared" => o.propagation.push(MsFlags::MS_SHARED),
                "rshared" => o.propagation.push(MsFlags::MS_SHARED | MsFlags::MS_REC),
                "slave" => o.propagation.push(MsFlags::MS_SLAVE),
                "rslave" => o.propagation.push(MsFlags::MS_SLAVE | MsFlags::MS_REC),
                "unbindable" => o.propagation.push(MsFlags::MS_UNBINDABLE),
                "runbindable" => o.propagation.push(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
                "tmpcopyup" => o.tmpcopyup = true,
                "idmap" => o.idmap = true,
                "ridmap" => {
                    o.idmap = true;
                    o.ridmap = true;
                }
                other => {
                    if let Some((set, attr)) = recursive_attr(other) {
                        if set {
                            o.attr_set |= attr;
                            o.attr_clr &= !attr;
                        } else {
                            o.attr_clr |= attr;
                            o.attr_set &= !attr;
                        }
                        // The atime attributes are one field: clearing means
                        // "replace the whole field".
                        if attr & sys::MOUNT_ATTR__ATIME != 0 || other == "rrelatime" {
                            o.attr_clr |= sys::MOUNT_ATTR__ATIME;
                        }
                    } else {
                        o.data.push(other.to_string());
                    }
                }
            }
        }
        o
    }

    fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// The recursive (mount_setattr) forms: (set?, MOUNT_ATTR_*).
fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (true, sys::MOUNT_ATTR_RDONLY),
        "rrw" => (false, sys::MOUNT_ATTR_RDONLY),
        "rnosuid" => (true, sys::MOUNT_ATTR_NOSUID),
        "rsuid" => (false, sys::MOUNT_ATTR_NOSUID),
        "rnodev" => (true, sys::MOUNT_ATTR_NODEV),
        "rdev" => (false, sys::MOUNT_ATTR_NODEV),
        "rnoexec" => (true, sys::MOUNT_ATTR_NOEXEC),
        "rexec" => (false, sys::MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (true, sys::MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (false, sys::MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (true, sys::MOUNT_ATTR_RELATIME),
        "rnorelatime" => (false, sys::MOUNT_ATTR_RELATIME),
        "rnoatime" => (true, sys::MOUNT_ATTR_NOATIME),
        "ratime" => (false, sys::MOUNT_ATTR_NOATIME),
        "rstrictatime" => (true, sys::MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (false, sys::MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (true, sys::MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (false, sys::MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// Remounts the bind mount at `path` with exactly `flags`, as runc does, so
/// nosuid/nodev/noexec the source had are cleared unless asked for. When the
/// kernel refuses (the mount's flags are locked because it came from a more
/// privileged mount namespace, as in a rootless container), it retries
/// keeping the flags the mount already has.
pub fn bind_remount<P: ?Sized + nix::NixPath>(path: &P, flags: MsFlags) -> nix::Result<()> {
    let flags = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(None::<&str>, path, None::<&str>, flags, None::<&str>) {
        Err(nix::errno::Errno::EPERM) => mount(
            None::<&str>,
            path,
            None::<&str>,
            flags | locked_flags(path),
            None::<&str>,
        ),
        other => other,
    }
}

/// Flags of the mount at `path` that an unprivileged remount may not clear.
fn locked_flags<P: ?Sized + nix::NixPath>(path: &P) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// What mounting needs besides the mount entry itself.
pub struct MountContext<'a> {
    pub root: &'a Root,
    pub bundle: &'a Path,
    pub layout: &'a Layout,
    pub cgroup: &'a Cgroup,
    pub cgroupns: bool,
    /// Per mount: its bind source, already opened by `berth create` (see
    /// [`open_bind_sources`]), or None.
    pub sources: &'a [Option<OwnedFd>],
    /// Per mount: the user namespace that carries its idmapping, for the
    /// sources `berth create` could not open itself.
    pub idmaps: &'a [Option<OwnedFd>],
}

/// Mounts every `mounts` entry, in order (config.md: "in the listed order").
/// A read-only `/dev` is mounted writable and its flags returned: the
/// device nodes, /dev/pts, /dev/shm, the links and the console must be
/// made in it first, then [`make_readonly_at`] finishes it (as runc does).
pub fn mount_all(ctx: &MountContext, mounts: &[Mount]) -> Result<bool> {
    let mut dev_readonly = false;
    for (i, m) in mounts.iter().enumerate() {
        let source = ctx.sources.get(i).and_then(Option::as_ref);
        let opts = Options::parse(m.options().as_deref().unwrap_or_default());
        let deferred = clean(m.destination()) == Path::new("/dev")
            && !opts.is_bind()
            && m.typ().as_deref() != Some("bind")
            && opts.flags.contains(MsFlags::MS_RDONLY);
        if deferred {
            let mut writable = m.clone();
            let options: Vec<String> = m
                .options()
                .iter()
                .flatten()
                .filter(|o| *o != "ro")
                .cloned()
                .collect();
            writable.set_options(Some(options));
            mount_one(ctx, &writable, source, None)?;
            dev_readonly = true;
        } else {
            mount_one(ctx, m, source, ctx.idmaps.get(i).and_then(Option::as_ref))?;
        }
    }
    Ok(dev_readonly)
}

/// Makes the mount at `path` read-only, by fd (mount_setattr): after
/// pivot_root, when the terminal is in place, as runc finishes /dev.
pub fn make_readonly_at(path: &CStr) -> Result<()> {
    let shown = path.to_string_lossy();
    let fd = sys::openat2(
        libc::AT_FDCWD,
        path,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| Error::path("open", shown.as_ref(), e))?;
    let attr = MountAttr {
        attr_set: sys::MOUNT_ATTR_RDONLY,
        ..Default::default()
    };
    sys::mount_setattr(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH as u32, &attr)
        .map_err(|e| Error::path("make read-only", shown.as_ref(), e))
}

/// Whether a mount asks for an idmapping (by option or by mappings).
pub fn wants_idmap(m: &Mount) -> bool {
    m.uid_mappings().is_some()
        || m.gid_mappings().is_some()
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "idmap" || o == "ridmap")
}

/// Whether a mount is a bind mount (by type or by option).
pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// A bind mount's source path: relative ones are relative to the bundle.
fn bind_source_path(m: &Mount, bundle: &Path) -> Result<PathBuf> {
    let src = m.source().as_ref().ok_or_else(|| {
        Error::Config(format!(
            "mounts: {}: bind mount needs a source",
            m.destination().display()
        ))
    })?;
    Ok(if src.is_relative() {
        bundle.join(src)
    } else {
        src.clone()
    })
}

/// Opens every bind mount's source as a detached mount (open_tree), in
/// `berth create` before the init exists, as runc does: a source the
/// container's user namespace could not reach (a 0700 directory of the
/// host's root) still mounts, and a source path cannot be swapped by the
/// time the init mounts it. An idmapped mount gets its mapping here too.
/// None where the kernel does not let this process do it (an unprivileged
/// berth): the init then mounts that source by path.
pub fn open_bind_sources(
    mounts: &[Mount],
    bundle: &Path,
    idmaps: &[Option<OwnedFd>],
) -> Result<Vec<Option<OwnedFd>>> {
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        if !is_bind(m) {
            out.push(None);
            continue;
        }
        let src = bind_source_path(m, bundle)?;
        let dest = m.destination().display();
        if let Err(e) = std::fs::metadata(&src) {
            return Err(Error::Config(format!(
                "mounts: {dest}: source {}: {e}",
                src.display()
            )));
        }
        let opts = Options::parse(m.options().as_deref().unwrap_or_default());
        let csrc = CString::new(src.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Config(format!("mounts: {dest}: source contains NUL")))?;
        let mut flags = sys::OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
        if opts.flags.contains(MsFlags::MS_REC) {
            flags |= sys::AT_RECURSIVE;
        }
        let tree = match sys::open_tree(libc::AT_FDCWD, &csrc, flags) {
            Ok(t) => t,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                out.push(None);
                continue;
            }
            Err(e) => {
                return Err(Error::path(
                    &format!("mounts: {dest}: open source"),
                    &src,
                    e,
                ))
            }
        };
        if let Some(userns) = idmaps.get(i).and_then(Option::as_ref) {
            let attr = MountAttr {
                attr_set: sys::MOUNT_ATTR_IDMAP,
                userns_fd: userns.as_raw_fd() as u64,
                ..Default::default()
            };
            let mut set_flags = libc::AT_EMPTY_PATH as u32;
            if opts.ridmap {
                set_flags |= sys::AT_RECURSIVE;
            }
            sys::mount_setattr(tree.as_raw_fd(), c"", set_flags, &attr)
                .map_err(|e| Error::path(&format!("mounts: {dest}: idmap source"), &src, e))?;
        }
        out.push(Some(tree));
    }
    Ok(out)
}

/// Mount destinations inside /proc that runc accepts: the files lxcfs
/// emulates. Anything else there could redirect berth's own /proc writes
/// or hide what maskedPaths hides.
const PROC_DESTINATIONS_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// The lexical form of a destination: absolute, no `.`, no empty parts.
fn clean(dest: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in dest.components() {
        match c {
            std::path::Component::Normal(p) => out.push(p),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Refuses destinations that would let the config reach the host through
/// /proc (runc's checkProcMount, CVE-2025-52881) or mount proc or sysfs
/// through a symlink (CVE-2019-19921, CVE-2023-27561): `resolved` is where
/// `dest` leads inside the rootfs.
fn check_destination(
    ctx: &MountContext,
    dest: &Path,
    resolved: &Path,
    typ: &str,
    source: Option<&OwnedFd>,
) -> Result<()> {
    let shown = dest.display();
    if typ == "proc" || typ == "sysfs" {
        let not_dir = || {
            ctx.root
                .open_in(resolved, libc::O_PATH | libc::O_DIRECTORY)
                .is_err_and(|e| e.raw_os_error() != Some(libc::ENOENT))
        };
        if resolved != clean(dest) || not_dir() {
            return Err(Error::Config(format!(
                "mounts: {shown}: filesystem \"{typ}\" must be mounted on ordinary directory"
            )));
        }
    }
    if !resolved.starts_with("/proc") {
        return Ok(());
    }
    if resolved == Path::new("/proc") {
        let procfs_source = source.is_some_and(|s| {
            sys::fs_type(s.as_fd()).is_ok_and(|t| t == crate::procfs::PROC_SUPER_MAGIC)
        });
        if typ == "proc" || procfs_source {
            return Ok(());
        }
        return Err(Error::Config(format!(
            "mounts: {shown}: \"/proc\" cannot be mounted because it is not of type proc"
        )));
    }
    if PROC_DESTINATIONS_ALLOWED
        .iter()
        .any(|p| Path::new(p) == resolved)
    {
        return Ok(());
    }
    Err(Error::Config(format!(
        "mounts: {shown}: \"{}\" cannot be mounted because it is inside /proc",
        resolved.display()
    )))
}

fn mount_one(
    ctx: &MountContext,
    m: &Mount,
    tree: Option<&OwnedFd>,
    idmap: Option<&OwnedFd>,
) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("none");
    let opts = Options::parse(m.options().as_deref().unwrap_or_default());
    let is_bind = opts.is_bind() || typ == "bind";
    let resolved = ctx.root.resolve(m.destination())?;
    check_destination(ctx, m.destination(), &resolved, typ, tree)?;
    let dest = resolved.as_path();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, dest, &opts);
    }
    let source: Option<PathBuf> = if is_bind {
        Some(bind_source_path(m, ctx.bundle)?)
    } else {
        m.source().clone()
    };
    let target = if is_bind {
        let src = source.as_deref().unwrap_or(Path::new(""));
        let is_dir = match tree {
            Some(t) => crate::rootfs::is_dir(t.as_fd()),
            None => std::fs::metadata(src).map(|m| m.is_dir()).map_err(|e| {
                Error::Config(format!(
                    "mounts: {}: source {}: {e}",
                    m.destination().display(),
                    src.display()
                ))
            })?,
        };
        if is_dir {
            ctx.root.mkdir_all(dest)?
        } else {
            ctx.root.create_file(dest)?
        }
    } else {
        ctx.root.mkdir_all(dest)?
    };
    // What the kernel opened is checked too: a destination that turned
    // into a procfs file meanwhile is refused all the same.
    let on_procfs =
        sys::fs_type(target.as_fd()).is_ok_and(|t| t == crate::procfs::PROC_SUPER_MAGIC);
    if on_procfs
        && !PROC_DESTINATIONS_ALLOWED
            .iter()
            .any(|p| Path::new(p) == dest)
    {
        return Err(Error::Config(format!(
            "mounts: {}: \"{}\" cannot be mounted because it is inside /proc",
            m.destination().display(),
            dest.display()
        )));
    }
    let target_path = fd_path(&target);
    let what = || {
        format!(
            "mount {} ({typ}) at {}",
            source.as_deref().unwrap_or(Path::new(typ)).display(),
            m.destination().display()
        )
    };
    if let Some(tree) = tree {
        sys::move_mount_to_fd(tree.as_fd(), target.as_fd()).map_err(|e| Error::sys(what(), e))?;
    } else if let Some(userns) = idmap {
        let src = source.as_deref().unwrap_or(Path::new(""));
        idmapped_bind(src, &target, userns, &opts).ctx(what)?;
    } else if is_bind {
        let src = source.as_deref().unwrap_or(Path::new(""));
        mount(
            Some(src),
            target_path.as_c_str(),
            None::<&str>,
            opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            None::<&str>,
        )
        .ctx(what)?;
    } else if opts.tmpcopyup && typ == "tmpfs" {
        tmpfs_copyup(ctx.root, dest, &target, &opts)?;
    } else {
        let mounted = mount(
            source.as_deref().or(Some(Path::new(typ))),
            target_path.as_c_str(),
            Some(typ),
            opts.flags,
            opts.data().as_deref(),
        );
        match mounted {
            Ok(()) => {}
            Err(e) => mount_fallback(typ, &target_path, &opts, e).ctx(what)?,
        }
    }
    // The fd above names the directory under the new mount; act on the mount.
    let mounted = ctx
        .root
        .open_in(dest, libc::O_PATH)
        .map_err(|e| Error::path("open", dest, e))?;
    let mounted_path = fd_path(&mounted);
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if is_bind && !extra.is_empty() {
        bind_remount(mounted_path.as_c_str(), extra)
            .ctx(|| format!("remount {} with its options", dest.display()))?;
    }
    for p in &opts.propagation {
        mount(
            None::<&str>,
            mounted_path.as_c_str(),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .ctx(|| format!("set propagation of {}", dest.display()))?;
    }
    if opts.attr_set != 0 || opts.attr_clr != 0 {
        let attr = MountAttr {
            attr_set: opts.attr_set,
            attr_clr: opts.attr_clr,
            ..Default::default()
        };
        sys::mount_setattr(
            mounted.as_raw_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32 | sys::AT_RECURSIVE,
            &attr,
        )
        .map_err(|e| Error::path("set recursive mount attributes on", dest, e))?;
    }
    Ok(())
}

/// What runc does when a user namespace may not make a filesystem (a
/// rootless container, or any user namespace without the namespace the
/// filesystem belongs to): sysfs and mqueue become read-only binds of the
/// host's (which the container could see anyway), and a devpts whose
/// `gid=` names a group the namespace does not map is made without it.
fn mount_fallback(typ: &str, target: &CStr, opts: &Options, e: nix::Error) -> nix::Result<()> {
    let host = match (typ, e) {
        ("sysfs", nix::Error::EPERM) => "/sys",
        ("mqueue", nix::Error::EPERM) => "/dev/mqueue",
        ("devpts", nix::Error::EINVAL) if opts.data.iter().any(|d| d.starts_with("gid=")) => {
            let data: Vec<&str> = opts
                .data
                .iter()
                .filter(|d| !d.starts_with("gid="))
                .map(String::as_str)
                .collect();
            return mount(
                Some("devpts"),
                target,
                Some("devpts"),
                opts.flags,
                Some(data.join(",").as_str()),
            );
        }
        _ => return Err(e),
    };
    mount(
        Some(host),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    bind_remount(target, opts.flags | MsFlags::MS_RDONLY)
}

/// config.md "uidMappings"/"gidMappings": a detached copy of the source,
/// given the mapping of `userns` with mount_setattr(MOUNT_ATTR_IDMAP), then
/// attached at the target.
fn idmapped_bind(
    src: &Path,
    target: &OwnedFd,
    userns: &OwnedFd,
    opts: &Options,
) -> std::io::Result<()> {
    let csrc = CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let recursive = opts.flags.contains(MsFlags::MS_REC);
    let mut flags = sys::OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if recursive {
        flags |= sys::AT_RECURSIVE;
    }
    let tree = sys::open_tree(libc::AT_FDCWD, &csrc, flags)?;
    let attr = MountAttr {
        attr_set: sys::MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    let mut set_flags = libc::AT_EMPTY_PATH as u32;
    if opts.ridmap {
        set_flags |= sys::AT_RECURSIVE;
    }
    sys::mount_setattr(tree.as_raw_fd(), c"", set_flags, &attr)?;
    sys::move_mount_to_fd(tree.as_fd(), target.as_fd())
}

/// `tmpcopyup`: a tmpfs that starts with what the directory under it held.
fn tmpfs_copyup(root: &Root, dest: &Path, under: &OwnedFd, opts: &Options) -> Result<()> {
    let staging = tempdir_in_proc()?;
    let s = staging.path();
    mount(
        Some("tmpfs"),
        s,
        Some("tmpfs"),
        opts.flags,
        opts.data().as_deref(),
    )
    .ctx(|| "mount staging tmpfs")?;
    let result = (|| {
        let src = fd_path(under);
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.to_string_lossy()))
            .arg(s)
            .status()
            .map_err(|e| Error::sys("run cp for tmpcopyup", e))?;
        if !status.success() {
            return Err(Error::Other(format!(
                "tmpcopyup of {}: cp failed",
                dest.display()
            )));
        }
        let target = root
            .open_in(dest, libc::O_PATH)
            .map_err(|e| Error::path("open", dest, e))?;
        mount(
            Some(s),
            fd_path(&target).as_c_str(),
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .ctx(|| format!("move tmpfs onto {}", dest.display()))
    })();
    if result.is_err() {
        let _ = nix::mount::umount2(s, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(s);
    result
}

struct StagingDir(PathBuf);
impl StagingDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

fn tempdir_in_proc() -> Result<StagingDir> {
    let p = std::env::temp_dir().join(format!("berth-copyup-{}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| Error::path("mkdir", &p, e))?;
    Ok(StagingDir(p))
}

/// A `cgroup` mount: on cgroup v1 a tmpfs with one subdirectory per
/// hierarchy, as runc lays it out; on a pure v2 host the cgroup2 tree. With
/// a cgroup namespace the hierarchies are mounted afresh (they show the
/// container's cgroup as root); without one, the container's own cgroup
/// directories are bind-mounted.
fn mount_cgroup(ctx: &MountContext, dest: &Path, opts: &Options) -> Result<()> {
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if ctx.layout.is_pure_v2() {
        let target = ctx.root.mkdir_all(dest)?;
        return mount_hierarchy(ctx, &target, None, 0, flags, dest);
    }
    let target = ctx.root.mkdir_all(dest)?;
    mount(
        Some("tmpfs"),
        fd_path(&target).as_c_str(),
        Some("tmpfs"),
        (flags & !MsFlags::MS_RDONLY) | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .ctx(|| format!("mount tmpfs for cgroups at {}", dest.display()))?;
    for (i, h) in ctx.layout.hierarchies.iter().enumerate() {
        let name = h
            .mount_point
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| h.controllers.join(",").into());
        let sub = dest.join(&name);
        let sub_fd = ctx.root.mkdir_all(&sub)?;
        mount_hierarchy(ctx, &sub_fd, Some(h), i, flags, &sub)?;
        // Co-mounted controllers (cpu,cpuacct) also get a link per controller.
        let name_s = name.to_string_lossy();
        if name_s.contains(',') {
            for c in name_s.split(',') {
                let (dir, link) = ctx.root.parent_of(&dest.join(c))?;
                let target = CString::new(name_s.as_bytes()).expect("no NUL");
                // SAFETY: symlinkat on our dir fd with NUL-terminated strings.
                unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), link.as_ptr()) };
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let again = ctx
            .root
            .open_in(dest, libc::O_PATH)
            .map_err(|e| Error::path("open", dest, e))?;
        let p = fd_path(&again);
        mount(
            None::<&str>,
            p.as_c_str(),
            None::<&str>,
            flags
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .ctx(|| format!("remount {} read-only", dest.display()))?;
    }
    Ok(())
}

fn mount_hierarchy(
    ctx: &MountContext,
    target: &OwnedFd,
    h: Option<&crate::cgroups::Hierarchy>,
    index: usize,
    flags: MsFlags,
    shown: &Path,
) -> Result<()> {
    let target_path = fd_path(target);
    let is_v2 = h.is_none_or(|h| h.is_v2());
    if ctx.cgroupns {
        let (fstype, data) = if is_v2 {
            ("cgroup2", None)
        } else {
            ("cgroup", h.map(|h| h.controllers.join(",")))
        };
        mount(
            Some(fstype),
            target_path.as_c_str(),
            Some(fstype),
            flags,
            data.as_deref(),
        )
        .ctx(|| format!("mount {fstype} at {}", shown.display()))?;
        return Ok(());
    }
    let index = if h.is_none() {
        ctx.layout
            .hierarchies
            .iter()
            .position(|h| h.is_v2())
            .unwrap_or(0)
    } else {
        index
    };
    let Some(src) = ctx.cgroup.paths.get(index) else {
        // No cgroup of its own (rootless, not delegated): the directory
        // stays an empty one, as runc leaves it.
        return Ok(());
    };
    mount(
        Some(src.as_path()),
        target_path.as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind mount {} at {}", src.display(), shown.display()))?;
    let extra = flags & !MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        let again = ctx
            .root
            .open_in(shown, libc::O_PATH)
            .map_err(|e| Error::path("open", shown, e))?;
        mount(
            None::<&str>,
            fd_path(&again).as_c_str(),
            None::<&str>,
            extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .ctx(|| format!("remount {}", shown.display()))?;
    }
    Ok(())
}

/// Bind-mounts the host path `src` onto the object `target` refers to.
pub fn bind_onto_fd(src: &CStr, target: &OwnedFd, recursive: bool) -> nix::Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(
        Some(src),
        fd_path(target).as_c_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
}

/// Opens `path` as this process sees it (after pivot_root: inside the
/// container), following symlinks but never a /proc magic link; None when
/// nothing is there.
fn open_existing(path: &str) -> Result<Option<OwnedFd>> {
    let c = CString::new(path).map_err(|_| Error::Config(format!("path {path:?} contains NUL")))?;
    match sys::openat2(
        libc::AT_FDCWD,
        &c,
        libc::O_PATH,
        0,
        sys::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::path("open", path, e)),
    }
}

/// The container's `/dev/null`, verified to be the null device (char 1:3)
/// and not a symlink: it is what masks files (CVE-2025-31133).
fn open_dev_null() -> Result<OwnedFd> {
    let not_null = |what: &str| {
        Error::Other(format!(
            "maskedPaths: /dev/null in the container is not the null device (c 1:3) but {what}: refusing to mask with it"
        ))
    };
    let fd = sys::openat2(
        libc::AT_FDCWD,
        c"/dev/null",
        libc::O_PATH,
        0,
        sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => not_null("a symlink"),
        _ => Error::path("maskedPaths: open the mask source", "/dev/null", e),
    })?;
    let st = nix::sys::stat::fstat(&fd).ctx(|| "maskedPaths: stat /dev/null")?;
    let is_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == 1
        && libc::minor(st.st_rdev) == 3;
    if !is_null {
        return Err(not_null("another file"));
    }
    Ok(fd)
}

/// config-linux.md "Masked Paths": each existing path is hidden behind an
/// empty read-only tmpfs (directories) or the container's verified
/// /dev/null (anything else). Runs after pivot_root, so paths are the
/// container's own; the masks are attached by fd (move_mount), so no path
/// through the container's /proc decides what is mounted where.
pub fn apply_masked_paths(paths: &[String]) -> Result<()> {
    let mut null = None;
    for p in paths {
        let Some(target) = open_existing(p)? else {
            continue;
        };
        let mask = if crate::rootfs::is_dir(target.as_fd()) {
            sys::fs_mount(c"tmpfs", &[], sys::MOUNT_ATTR_RDONLY)
                .map_err(|e| Error::sys(format!("mask {p}: make a tmpfs"), e))?
        } else {
            if null.is_none() {
                null = Some(open_dev_null()?);
            }
            let null = null.as_ref().expect("opened above");
            sys::clone_mount_of(null.as_fd(), false)
                .map_err(|e| Error::sys(format!("mask {p}: clone /dev/null"), e))?
        };
        sys::move_mount_to_fd(mask.as_fd(), target.as_fd())
            .map_err(|e| Error::sys(format!("mask {p}"), e))?;
    }
    Ok(())
}

/// config-linux.md "Readonly Paths": each existing path gets a read-only
/// copy of its own mounts (submounts included) stacked on top of it.
pub fn apply_readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let Some(target) = open_existing(p)? else {
            continue;
        };
        let tree = sys::clone_mount_of(target.as_fd(), true)
            .map_err(|e| Error::path("bind readonly path", p, e))?;
        let attr = MountAttr {
            attr_set: sys::MOUNT_ATTR_RDONLY,
            ..Default::default()
        };
        sys::mount_setattr(
            tree.as_raw_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32 | sys::AT_RECURSIVE,
            &attr,
        )
        .map_err(|e| Error::path("make read-only", p, e))?;
        sys::move_mount_to_fd(tree.as_fd(), target.as_fd())
            .map_err(|e| Error::path("bind readonly path", p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Options {
        Options::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let o = parse(&[
            "nosuid",
            "ro",
            "rw",
            "mode=755",
            "size=65536k",
            "rbind",
            "rslave",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse(&["rro", "rnosuid", "rnoatime"]);
        assert_eq!(
            o.attr_set,
            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOATIME
        );
        assert!(o.attr_clr & sys::MOUNT_ATTR__ATIME != 0);
        let o = parse(&["rro", "rrw"]);
        assert_eq!(o.attr_set, 0);
        assert_eq!(o.attr_clr, sys::MOUNT_ATTR_RDONLY);
    }
}
