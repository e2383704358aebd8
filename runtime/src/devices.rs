//! Devices (config-linux.md "Devices", "Default Devices", and the device
//! allow-list of "Control groups").

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxResources};

use crate::error::{Context, Error, Result};
use crate::rootfs::Root;

/// One allow-list entry, in the v1 `devices.allow` sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub typ: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    fn new(allow: bool, typ: char, major: Option<i64>, minor: Option<i64>, access: &str) -> Self {
        DeviceRule {
            allow,
            typ,
            major,
            minor,
            access: access.into(),
        }
    }

    /// `c 1:3 rwm`, as devices.allow takes it.
    pub fn to_v1_string(&self) -> String {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        if self.typ == 'a' {
            return "a *:* rwm".into();
        }
        format!(
            "{} {}:{} {}",
            self.typ,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    /// BPF_DEVCG_ACC_{MKNOD=1, READ=2, WRITE=4}.
    pub fn access_mask(&self) -> u32 {
        if self.typ == 'a' {
            return 0b111;
        }
        self.access.chars().fold(0, |m, c| match c {
            'm' => m | 1,
            'r' => m | 2,
            'w' => m | 4,
            _ => m,
        })
    }
}

/// Devices every container may use whatever its allow-list says (runc's list):
/// mknod of anything, the default devices, ptys and /dev/net/tun.
fn default_allowed() -> Vec<DeviceRule> {
    let c = |maj, min: Option<i64>| DeviceRule::new(true, 'c', Some(maj), min, "rwm");
    vec![
        DeviceRule::new(true, 'c', None, None, "m"),
        DeviceRule::new(true, 'b', None, None, "m"),
        c(1, Some(3)),
        c(1, Some(8)),
        c(1, Some(7)),
        c(5, Some(0)),
        c(1, Some(5)),
        c(1, Some(9)),
        c(5, Some(1)),
        c(136, None),
        c(5, Some(2)),
        c(10, Some(200)),
    ]
}

/// The full allow-list: the config's rules (deny-all when it has none, so a
/// config without rules is not silently allow-all), then the defaults, then
/// the devices the config asks to be created.
pub fn cgroup_rules(
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Vec<DeviceRule> {
    let mut rules = Vec::new();
    let config_rules = resources.and_then(|r| r.devices().as_ref());
    match config_rules {
        Some(list) if !list.is_empty() => {
            for d in list {
                let typ = match d.typ() {
                    Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
                    Some(LinuxDeviceType::B) => 'b',
                    _ => 'a',
                };
                let access = d.access().clone().unwrap_or_else(|| "rwm".into());
                rules.push(DeviceRule::new(
                    d.allow(),
                    typ,
                    d.major(),
                    d.minor(),
                    &access,
                ));
            }
        }
        _ => rules.push(DeviceRule::new(false, 'a', None, None, "rwm")),
    }
    rules.extend(default_allowed());
    for d in devices {
        let typ = match d.typ() {
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            _ => continue,
        };
        rules.push(DeviceRule::new(
            true,
            typ,
            Some(d.major()),
            Some(d.minor()),
            "rwm",
        ));
    }
    rules
}

/// runtime-linux.md "Default Devices".
const DEFAULT_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default devices and `linux.devices` in the rootfs. Inside a
/// new user namespace mknod is not allowed, so the host's node is bind
/// mounted onto an empty file instead, as runc does.
pub fn create_devices(root: &Root, devices: &[LinuxDevice], bind: bool) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        // A config entry for the same path overrides the default one.
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        create_device(
            root,
            Path::new(path),
            'c',
            *major,
            *minor,
            0o666,
            0,
            0,
            bind,
        )?;
    }
    for d in devices {
        let typ = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => {
                return Err(Error::Config(format!(
                    "linux.devices: {}: type must be c, b, u or p",
                    d.path().display()
                )))
            }
        };
        create_device(
            root,
            d.path(),
            typ,
            d.major(),
            d.minor(),
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            bind,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn create_device(
    root: &Root,
    path: &Path,
    typ: char,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    bind: bool,
) -> Result<()> {
    if bind {
        let target = root.create_file(path)?;
        let src = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Config(format!("linux.devices: bad path {}", path.display())))?;
        crate::mounts::bind_onto_fd(&src, &target, false)
            .ctx(|| format!("bind device {} into the container", path.display()))?;
        return Ok(());
    }
    let (parent, name) = root.parent_of(path)?;
    let kind = match typ {
        'c' => libc::S_IFCHR,
        'b' => libc::S_IFBLK,
        _ => libc::S_IFIFO,
    };
    let dev = libc::makedev(major as u32, minor as u32);
    // SAFETY: mknodat/fchownat on a directory fd we own and a NUL-terminated name.
    let r = unsafe {
        libc::mknodat(
            parent.as_raw_fd(),
            name.as_ptr(),
            kind | (mode & 0o7777),
            dev,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::path("mknod", path, e));
        }
    }
    // SAFETY: as above.
    if unsafe {
        libc::fchownat(
            parent.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(Error::path("chown", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `/dev/ptmx` → `pts/ptmx` and the /proc/self/fd links every Linux program
/// expects (runtime-linux.md "Dev symbolic links").
pub fn create_dev_symlinks(root: &Root) -> Result<()> {
    let (dev, _) = root.parent_of(Path::new("/dev/null"))?;
    for (name, target) in [
        (c"ptmx", c"pts/ptmx"),
        (c"fd", c"/proc/self/fd"),
        (c"stdin", c"/proc/self/fd/0"),
        (c"stdout", c"/proc/self/fd/1"),
        (c"stderr", c"/proc/self/fd/2"),
    ] {
        if name == c"ptmx" {
            // SAFETY: unlinkat on our dir fd; a missing file is fine.
            unsafe { libc::unlinkat(dev.as_raw_fd(), name.as_ptr(), 0) };
        }
        // SAFETY: symlinkat with NUL-terminated strings on our dir fd.
        if unsafe { libc::symlinkat(target.as_ptr(), dev.as_raw_fd(), name.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::path(
                    "symlink",
                    format!("/dev/{}", name.to_string_lossy()),
                    e,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_render_as_v1() {
        let rules = cgroup_rules(None, &[]);
        assert_eq!(rules[0].to_v1_string(), "a *:* rwm");
        assert!(!rules[0].allow);
        assert_eq!(rules[1].to_v1_string(), "c *:* m");
        assert_eq!(rules[3].to_v1_string(), "c 1:3 rwm");
        assert!(rules.iter().any(|r| r.to_v1_string() == "c 136:* rwm"));
    }
}
