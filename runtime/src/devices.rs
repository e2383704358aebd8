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

    /// BPF_DEVCG_ACC_{MKNOD=1, READ=2, WRITE=4}. Letters other than r, w
    /// and m are ignored, as runc ignores them (the kernel would refuse the
    /// whole rule).
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

    fn key(&self) -> (char, Option<i64>, Option<i64>) {
        (self.typ, self.major, self.minor)
    }

    fn from_key(key: (char, Option<i64>, Option<i64>), access: u32, allow: bool) -> DeviceRule {
        let letters: String = [(2, 'r'), (4, 'w'), (1, 'm')]
            .iter()
            .filter(|(bit, _)| access & bit != 0)
            .map(|(_, c)| *c)
            .collect();
        DeviceRule::new(allow, key.0, key.1, key.2, &letters)
    }
}

/// Devices every container may use whatever its allow-list says (runc's
/// list, appended after the config's rules): mknod of anything, the default
/// devices, ptys, /dev/ptmx and /dev/net/tun. Nothing else: in particular
/// neither the nodes `linux.devices` creates nor /dev/console (its pty is
/// a 136:* device) get a rule of their own; the config's rules decide.
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
        c(136, None),
        c(5, Some(2)),
        c(10, Some(200)),
    ]
}

/// The allow-list as the config asks for it: its rules in order (from a
/// deny-all start, so a config without rules is not silently allow-all),
/// then runc's defaults. [`Emulator`] turns this into what the cgroup gets.
pub fn cgroup_rules(resources: Option<&LinuxResources>) -> Vec<DeviceRule> {
    let mut rules = Vec::new();
    for d in resources
        .and_then(|r| r.devices().as_ref())
        .into_iter()
        .flatten()
    {
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
    rules.extend(default_allowed());
    rules
}

/// Access bits, as BPF_DEVCG_ACC_* (mknod 1, read 2, write 4).
type Access = u32;

/// The v1 device cgroup's semantics, kept in memory (as runc's devices
/// emulator does): a default for every device and a list of exceptions.
/// Rules are applied the way the kernel applies devices.allow/deny writes;
/// the cgroup then gets only the writes that move it from what it has to
/// the result, so redundant or kernel-rejected rules are never written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Emulator {
    default_allow: bool,
    exceptions: std::collections::BTreeMap<(char, Option<i64>, Option<i64>), Access>,
}

impl Emulator {
    /// A deny-all start with `rules` applied in order.
    pub fn from_rules(rules: &[DeviceRule]) -> Result<Emulator> {
        let mut e = Emulator::default();
        for (i, r) in rules.iter().enumerate() {
            e.apply(r)
                .map_err(|msg| Error::Config(format!("linux.resources.devices[{i}]: {msg}")))?;
        }
        Ok(e)
    }

    /// What a v1 cgroup holds, from its `devices.list`: `a *:* rwm` means
    /// allow-all (whose deny exceptions the kernel does not list).
    pub fn from_list(list: &str) -> Emulator {
        let mut e = Emulator::default();
        for line in list.lines() {
            let mut f = line.split_whitespace();
            let (Some(typ), Some(nums), Some(access)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let typ = typ.chars().next().unwrap_or('a');
            if typ == 'a' {
                return Emulator {
                    default_allow: true,
                    exceptions: Default::default(),
                };
            }
            let num = |s: &str| s.parse::<i64>().ok();
            let (major, minor) = nums.split_once(':').unwrap_or(("*", "*"));
            let rule = DeviceRule::new(true, typ, num(major), num(minor), access);
            *e.exceptions.entry(rule.key()).or_default() |= rule.access_mask();
        }
        e
    }

    /// One rule, as the kernel applies a devices.allow or devices.deny write.
    pub fn apply(&mut self, rule: &DeviceRule) -> std::result::Result<(), String> {
        if rule.typ == 'a' {
            *self = Emulator {
                default_allow: rule.allow,
                exceptions: Default::default(),
            };
            return Ok(());
        }
        let access = rule.access_mask();
        if access == 0 {
            return Ok(());
        }
        // An allow in allow-all mode, or a deny in deny-all mode, takes an
        // exception away; the other two add one.
        if rule.allow == self.default_allow {
            self.remove(rule, access)
        } else {
            *self.exceptions.entry(rule.key()).or_default() |= access;
            Ok(())
        }
    }

    /// The kernel takes access away only from an exception with exactly the
    /// same type and numbers, and silently ignores the rest: a rule that
    /// would need a hole punched into a wildcard exception is refused
    /// rather than silently not applied.
    fn remove(&mut self, rule: &DeviceRule, access: Access) -> std::result::Result<(), String> {
        let key = rule.key();
        let partial = [
            (rule.typ, None, rule.minor),
            (rule.typ, rule.major, None),
            (rule.typ, None, None),
        ];
        for wider in partial {
            if wider == key {
                continue;
            }
            if self.exceptions.get(&wider).is_some_and(|a| a & access != 0) {
                return Err(format!(
                    "{} cannot be applied: the cgroup would have to punch a hole into the wider rule {}",
                    rule.to_v1_string(),
                    DeviceRule::from_key(wider, self.exceptions[&wider], true).to_v1_string()
                ));
            }
        }
        if let Some(a) = self.exceptions.get_mut(&key) {
            *a &= !access;
            if *a == 0 {
                self.exceptions.remove(&key);
            }
        }
        Ok(())
    }

    /// The writes that turn a cgroup holding `self` into one holding
    /// `target` (runc's transition): a reset first when the defaults differ
    /// or the current deny exceptions are unknown (allow-all mode), then
    /// the access each exception loses, then the access each one gains.
    pub fn transition(&self, target: &Emulator) -> Vec<DeviceRule> {
        let mut out = Vec::new();
        let empty = Default::default();
        let old = if self.default_allow || self.default_allow != target.default_allow {
            out.push(DeviceRule::new(
                target.default_allow,
                'a',
                None,
                None,
                "rwm",
            ));
            &empty
        } else {
            &self.exceptions
        };
        for (key, access) in old {
            let lost = access & !target.exceptions.get(key).copied().unwrap_or(0);
            if lost != 0 {
                out.push(DeviceRule::from_key(*key, lost, target.default_allow));
            }
        }
        for (key, access) in &target.exceptions {
            let gained = access & !old.get(key).copied().unwrap_or(0);
            if gained != 0 {
                out.push(DeviceRule::from_key(*key, gained, !target.default_allow));
            }
        }
        out
    }

    /// The same state as a rule list in which the last matching rule
    /// decides (for the cgroup v2 eBPF program): the default, then the
    /// exceptions.
    pub fn as_rules(&self) -> Vec<DeviceRule> {
        let mut out = vec![DeviceRule::new(self.default_allow, 'a', None, None, "rwm")];
        out.extend(
            self.exceptions
                .iter()
                .map(|(k, a)| DeviceRule::from_key(*k, *a, !self.default_allow)),
        );
        out
    }
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
/// expects (runtime-linux.md "Dev symbolic links"), and `/dev/core` →
/// `/proc/kcore` where the kernel has one, as runc makes it.
pub fn create_dev_symlinks(root: &Root) -> Result<()> {
    let (dev, _) = root.parent_of(Path::new("/dev/null"))?;
    let kcore = Path::new("/proc/kcore").exists();
    let links = [
        (c"ptmx", c"pts/ptmx"),
        (c"fd", c"/proc/self/fd"),
        (c"stdin", c"/proc/self/fd/0"),
        (c"stdout", c"/proc/self/fd/1"),
        (c"stderr", c"/proc/self/fd/2"),
        (c"core", c"/proc/kcore"),
    ];
    for (name, target) in links {
        if name == c"core" && !kcore {
            continue;
        }
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
        let rules = cgroup_rules(None);
        assert_eq!(rules[0].to_v1_string(), "c *:* m");
        assert_eq!(rules[2].to_v1_string(), "c 1:3 rwm");
        assert!(rules.iter().any(|r| r.to_v1_string() == "c 136:* rwm"));
        assert!(!rules.iter().any(|r| r.to_v1_string() == "c 5:1 rwm"));
    }

    fn rule(allow: bool, typ: char, maj: Option<i64>, min: Option<i64>, acc: &str) -> DeviceRule {
        DeviceRule::new(allow, typ, maj, min, acc)
    }

    fn strings(rules: &[DeviceRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    if r.allow { "allow" } else { "deny" },
                    r.to_v1_string()
                )
            })
            .collect()
    }

    #[test]
    fn redundant_and_odd_rules_are_not_written() {
        // runc's default spec denies everything, a config then denies
        // /dev/kmsg again with an access letter the kernel rejects.
        let mut rules = vec![
            rule(false, 'a', None, None, "rwm"),
            rule(false, 'c', Some(1), Some(11), "rwa"),
        ];
        rules.extend(default_allowed());
        let target = Emulator::from_rules(&rules).unwrap();
        let fresh = Emulator::from_list("a *:* rwm\n");
        let writes = strings(&fresh.transition(&target));
        assert_eq!(writes[0], "deny a *:* rwm");
        assert!(!writes.iter().any(|w| w.contains("1:11")), "{writes:?}");
        assert!(writes
            .iter()
            .all(|w| w.starts_with("allow") || w == "deny a *:* rwm"));
        // Applying the same target again writes nothing.
        let now = Emulator::from_list(
            &target
                .as_rules()
                .iter()
                .skip(1)
                .map(DeviceRule::to_v1_string)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        assert_eq!(now, target);
        assert!(now.transition(&target).is_empty());
    }

    #[test]
    fn transitions_drop_and_add_access() {
        let from = Emulator::from_list("c 1:3 rwm\nc 1:5 rwm\n");
        let to = Emulator::from_rules(&[
            rule(true, 'c', Some(1), Some(3), "r"),
            rule(true, 'c', Some(1), Some(9), "rw"),
        ])
        .unwrap();
        assert_eq!(
            strings(&from.transition(&to)),
            ["deny c 1:3 wm", "deny c 1:5 rwm", "allow c 1:9 rw"]
        );
    }

    #[test]
    fn holes_in_wildcards_are_refused() {
        let e = Emulator::from_rules(&[
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'c', Some(1), None, "w"),
            rule(true, 'c', Some(1), Some(3), "w"),
        ])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.devices[2]: c 1:3 w cannot be applied"),
            "{e}"
        );
    }

    #[test]
    fn allow_all_then_deny() {
        let e = Emulator::from_rules(&[
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'c', Some(1), Some(11), "w"),
        ])
        .unwrap();
        assert_eq!(strings(&e.as_rules()), ["allow a *:* rwm", "deny c 1:11 w"]);
    }
}
