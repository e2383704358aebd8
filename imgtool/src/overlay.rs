//! Mounting a stack of layer directories with overlayfs through the new
//! mount API: each lower goes in with its own `lowerdir+` option, so images
//! with more layers than fit the one-page option string of mount(2) mount
//! too, and the kernel's own error text reaches the user.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

impl Overlay<'_> {
    pub fn mount(&self, target: &Path) -> Result<()> {
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
        if crate::rootless::active() {
            tracing::debug!(
                "rootless: {} is the kernel's overlayfs, mounted in the user's namespace",
                target.display()
            );
        }
        Ok(())
    }
}

/// Whether `path` is a mount point (its mount ID differs from its parent's).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Ok(canon) = std::fs::canonicalize(path) else {
        return false;
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
