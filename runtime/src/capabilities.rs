//! Capabilities (config.md "process.capabilities", all five sets).

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Error, Result};

/// The five sets as kernel bit masks.
#[derive(Debug, Default, Clone, Copy)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

/// runc's one warning for capabilities a config names that this build or
/// this kernel does not have.
pub fn warn_ignored(mut names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    names.sort();
    names.dedup();
    tracing::warn!(
        "ignoring unknown or unavailable capabilities: [{}]",
        names.join(" ")
    );
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The set as a bit mask; names this kernel does not have go to `missing`.
fn mask(set: &Option<Capabilities>, last: u8, missing: &mut Vec<String>) -> u64 {
    let mut m = 0u64;
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        match caps::Capability::from_str(&name) {
            Ok(c) if c.index() <= last => m |= 1 << c.index(),
            _ => missing.push(name),
        }
    }
    m
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> CapSets {
        let Some(c) = c else {
            return CapSets::default();
        };
        let last = last_cap();
        let mut missing = Vec::new();
        let sets = CapSets {
            bounding: mask(c.bounding(), last, &mut missing),
            effective: mask(c.effective(), last, &mut missing),
            inheritable: mask(c.inheritable(), last, &mut missing),
            permitted: mask(c.permitted(), last, &mut missing),
            ambient: mask(c.ambient(), last, &mut missing),
        };
        // Known to the config format but not to this kernel: runc ignores
        // them, with this warning.
        warn_ignored(missing);
        sets
    }

    /// Drops everything outside the bounding set. Needs CAP_SETPCAP, so it
    /// runs before the user switch.
    pub fn apply_bounding(&self) -> Result<()> {
        for cap in 0..=last_cap() {
            if self.bounding & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
                {
                    return Err(Error::sys(
                        format!("drop capability {cap} from the bounding set"),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sets effective, permitted and inheritable in one capset(2), then
    /// raises the ambient ones (which must be permitted and inheritable).
    pub fn apply(&self) -> Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let half = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
        let data = [false, true].map(|hi| Data {
            effective: half(self.effective, hi),
            permitted: half(self.permitted, hi),
            inheritable: half(self.inheritable, hi),
        });
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        // SAFETY: capset with a v3 header and two data structs.
        if unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) } != 0
        {
            return Err(Error::sys(
                "set process.capabilities",
                std::io::Error::last_os_error(),
            ));
        }
        for cap in 0..=last_cap() {
            if self.ambient & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments.
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                if r != 0 {
                    // runc warns and goes on: an ambient cap that is not also
                    // permitted and inheritable cannot be raised.
                    tracing::debug!(
                        "cannot raise ambient capability {cap}: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        Ok(())
    }
}
