//! POSIX rlimits (config.md "process.rlimits"), set on the init from the
//! parent with prlimit(2), so they hold even for limits that the container's
//! user could not raise itself.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result};

fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Checks for duplicates before anything is created.
pub fn validate(rlimits: &[PosixRlimit]) -> Result<()> {
    for (i, r) in rlimits.iter().enumerate() {
        if rlimits[..i].iter().any(|o| o.typ() == r.typ()) {
            return Err(Error::Config(format!(
                "process.rlimits: duplicate type {:?}",
                r.typ()
            )));
        }
        if r.soft() > r.hard() {
            return Err(Error::Config(format!(
                "process.rlimits: {:?}: soft limit {} exceeds hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
    }
    Ok(())
}

pub fn apply(pid: i32, rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: prlimit with a valid rlimit struct and no old-value pointer.
        if unsafe { libc::prlimit(pid, resource(r.typ()), &lim, std::ptr::null_mut()) } != 0 {
            return Err(Error::sys(
                format!(
                    "set process.rlimits {:?} (soft {}, hard {})",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
