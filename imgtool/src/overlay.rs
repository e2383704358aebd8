//! Mounting a stack of layer directories with overlayfs through the new
//! mount API: each lower goes in with its own `lowerdir+` option, so images
//! with more layers than fit the one-page option string of mount(2) mount
//! too, and the kernel's own error text reaches the user.
//!
//! Where a user namespace is refused the kernel's overlayfs (a kernel
//! before 5.11, a store it cannot stack), or where the user asks for it as
//! podman's `--storage-opt overlay.mount_program=` does, the same stack is
//! mounted by `fuse-overlayfs`, which reads the same whiteouts (0:0
//! character devices) and opaque marks (`trusted.`/`user.overlay.opaque`).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::error::{Error, Result};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

pub struct Overlay<'a> {
    /// Topmost first, as overlayfs stacks them.
    pub lowers: Vec<PathBuf>,
    pub upper: &'a Path,
    pub work: &'a Path,
    /// Extra `key=value` options, e.g. `redirect_dir=off` for builds.
    pub options: Vec<(&'static str, &'static str)>,
}

fn cstr(s: &[u8]) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new("?").unwrap())
}

/// The messages the kernel logged in the filesystem context.
fn context_log(fd: &OwnedFd) -> String {
    let mut f = std::fs::File::from(fd.try_clone().expect("dup fs context"));
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; the fd is non-blocking-ish (ENODATA
    // when empty).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    out.join("; ")
}

/// What mounts a stack; a bundle records it to mount it the same way again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The kernel's overlayfs.
    Kernel,
    /// `fuse-overlayfs`, a FUSE daemon in the caller's namespaces.
    Fuse,
}

impl Kind {
    /// As bundle metadata and `inspect` name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kernel => "overlay",
            Kind::Fuse => "fuse-overlayfs",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::Kernel, Kind::Fuse]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

static MOUNT_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Applies `--storage-opt KEY=VALUE`. The one key: podman's
/// `overlay.mount_program`, after which every stack is mounted by that
/// program (a fuse-overlayfs), never the kernel.
pub fn storage_opt(opt: &str) -> Result<()> {
    let invalid = |why: &str| Error::invalid("--storage-opt", format!("{opt:?}: {why}"));
    match opt.split_once('=') {
        Some(("overlay.mount_program" | "overlay2.mount_program", program)) => {
            let program = PathBuf::from(program);
            if !program.is_file() {
                return Err(invalid("no such program"));
            }
            let _ = MOUNT_PROGRAM.set(program);
            Ok(())
        }
        Some(_) => Err(invalid("unknown option (known: overlay.mount_program)")),
        None => Err(invalid("want KEY=VALUE")),
    }
}

/// Whether `--storage-opt overlay.mount_program=` was given: then a mount
/// that fails is an error, never a copy.
pub fn mount_program_asked() -> bool {
    MOUNT_PROGRAM.get().is_some()
}

/// The fuse-overlayfs to use: the one asked for, else the one on PATH.
fn fuse_program() -> Option<PathBuf> {
    if let Some(p) = MOUNT_PROGRAM.get() {
        return Some(p.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("fuse-overlayfs"))
        .find(|p| p.is_file())
}

impl Overlay<'_> {
    /// Mounts the stack at `target`: with the kernel's overlayfs, unless
    /// a mount program was asked for; in a user namespace the kernel
    /// refuses, with fuse-overlayfs from PATH. Says which it used.
    pub fn mount(&self, target: &Path) -> Result<Kind> {
        if let Some(program) = MOUNT_PROGRAM.get() {
            self.mount_fuse(target, program)?;
            return Ok(Kind::Fuse);
        }
        let kernel = match self.mount_kernel(target) {
            Ok(()) => {
                if crate::rootless::active() {
                    tracing::debug!(
                        "rootless: {} is the kernel's overlayfs, mounted in the user's namespace",
                        target.display()
                    );
                }
                return Ok(Kind::Kernel);
            }
            Err(e) if crate::rootless::active() => e,
            Err(e) => return Err(e),
        };
        let Some(program) = fuse_program() else {
            return Err(kernel);
        };
        tracing::info!(
            "rootless: the kernel's overlayfs is refused here ({kernel}): mounting with {}",
            program.display()
        );
        self.mount_fuse(target, &program)?;
        Ok(Kind::Fuse)
    }

    /// Mounts the stack as `kind` did before (a bundle mounted again).
    pub fn mount_as(&self, target: &Path, kind: Kind) -> Result<()> {
        match kind {
            Kind::Kernel => self.mount_kernel(target),
            Kind::Fuse => {
                let program = fuse_program().ok_or_else(|| {
                    Error::Path(
                        target.into(),
                        "mounted with fuse-overlayfs before, which is no longer on PATH".into(),
                    )
                })?;
                self.mount_fuse(target, &program)
            }
        }
    }

    /// Runs fuse-overlayfs, which mounts and then stays as the daemon
    /// serving the mount (detached, its stdio on /dev/null) until it is
    /// unmounted. The kernel-only options (`redirect_dir`, `metacopy`,
    /// `index`) have no meaning there: it writes plain copies.
    fn mount_fuse(&self, target: &Path, program: &Path) -> Result<()> {
        // Its option string separates with `,` and lowers with `:`.
        let dirs = self.lowers.iter().map(PathBuf::as_path);
        if let Some(bad) = dirs.chain([self.upper, self.work]).find(|d| {
            d.as_os_str()
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b',' | b':'))
        }) {
            return Err(Error::Path(
                bad.into(),
                "fuse-overlayfs cannot take a directory whose path has ',' or ':'".into(),
            ));
        }
        let lowers: Vec<&str> = self
            .lowers
            .iter()
            .map(|l| l.to_str().unwrap_or_default())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upper.display(),
            self.work.display()
        );
        let out = Command::new(program)
            .arg("-o")
            .arg(&options)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Error::Path(program.into(), format!("run: {e}")))?;
        if !out.status.success() {
            // Its complaints, on one line (libfuse writes several).
            let msg = String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("unknown argument ignored"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Path(
                target.into(),
                format!("{}: {msg} ({})", program.display(), out.status),
            ));
        }
        tracing::debug!(
            "{} is a fuse-overlayfs mount ({})",
            target.display(),
            program.display()
        );
        Ok(())
    }

    /// Mounts the stack with the kernel's overlayfs.
    fn mount_kernel(&self, target: &Path) -> Result<()> {
        // SAFETY: plain syscalls with valid C strings; results checked.
        unsafe {
            let fs = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC);
            if fs < 0 {
                return Err(Error::Path(
                    target.into(),
                    format!("fsopen overlay: {}", std::io::Error::last_os_error()),
                ));
            }
            let fs = OwnedFd::from_raw_fd(fs as i32);
            let set = |key: &str, value: &[u8]| -> Result<()> {
                let k = cstr(key.as_bytes());
                let v = cstr(value);
                if libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    k.as_ptr(),
                    v.as_ptr(),
                    0,
                ) < 0
                {
                    let e = std::io::Error::last_os_error();
                    let log = context_log(&fs);
                    return Err(Error::Path(
                        target.into(),
                        format!(
                            "overlay option {key}={}: {e} {log}",
                            String::from_utf8_lossy(value)
                        ),
                    ));
                }
                Ok(())
            };
            for l in &self.lowers {
                set("lowerdir+", l.as_os_str().as_bytes())?;
            }
            set("upperdir", self.upper.as_os_str().as_bytes())?;
            set("workdir", self.work.as_os_str().as_bytes())?;
            let rootless = crate::rootless::active();
            for (k, v) in &self.options {
                // `userxattr` (below) means redirect_dir=nofollow, which
                // creates no redirects either, and refuses any other.
                if !(rootless && *k == "redirect_dir") {
                    set(k, v.as_bytes())?;
                }
            }
            // In a user namespace overlayfs may not use `trusted.` xattrs:
            // its opaque marks and whiteouts' attributes go by `user.`.
            if rootless {
                let k = cstr(b"userxattr");
                if libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_FLAG,
                    k.as_ptr(),
                    0usize,
                    0,
                ) < 0
                {
                    let e = std::io::Error::last_os_error();
                    return Err(Error::Path(
                        target.into(),
                        format!("overlay option userxattr: {e} {}", context_log(&fs)),
                    ));
                }
            }
            if libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                0usize,
                0usize,
                0,
            ) < 0
            {
                let e = std::io::Error::last_os_error();
                return Err(Error::Path(
                    target.into(),
                    format!("mount overlay: {e} {}", context_log(&fs)),
                ));
            }
            let m = libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0);
            if m < 0 {
                return Err(Error::Path(
                    target.into(),
                    format!("fsmount: {}", std::io::Error::last_os_error()),
                ));
            }
            let m = OwnedFd::from_raw_fd(m as i32);
            let t = cstr(target.as_os_str().as_bytes());
            if libc::syscall(
                libc::SYS_move_mount,
                m.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ) < 0
            {
                return Err(Error::Path(
                    target.into(),
                    format!("move_mount: {}", std::io::Error::last_os_error()),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `path` is a mount point (its mount ID differs from its parent's).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    // The parent resolved, not the path itself: a FUSE mount whose daemon
    // died fails every lookup (ENOTCONN) but must still be found.
    let canon = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(p) => p.join(name),
            Err(_) => return false,
        },
        _ => match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    let want = canon.as_os_str().as_bytes();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape(mp).as_slice() == want)
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Unmounts `path` (every mount stacked there).
pub fn unmount(path: &Path) -> Result<()> {
    while is_mountpoint(path) {
        nix::mount::umount2(path, nix::mount::MntFlags::empty()).map_err(|e| {
            Error::Path(
                path.into(),
                if e == nix::errno::Errno::EBUSY {
                    "busy: is a container still running from this bundle?".to_string()
                } else {
                    format!("unmount: {e}")
                },
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(super::unescape(r"/a\040b\134c"), b"/a b\\c".to_vec());
    }
}
