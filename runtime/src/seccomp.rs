//! Seccomp (config-linux.md "Seccomp").
//!
//! The profile is compiled to BPF by libseccomp in `berth create` (or
//! `exec`), before the clone, and cached under `--root` keyed by the
//! profile: a container started from a profile seen before skips
//! libseccomp entirely. The process only loads the program, with
//! seccomp(2), at the point of the start path the spec's order puts it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::error::{Error, Result};

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_uint = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_uint = 4;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_uint = 8;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_uint = 32;

/// A profile compiled to a classic BPF program, ready for seccomp(2).
#[derive(Debug, Clone)]
pub struct Compiled {
    /// `struct sock_filter` array, as libseccomp exports it.
    pub bpf: Vec<u8>,
    pub flags: libc::c_uint,
    /// Some rule uses SCMP_ACT_NOTIFY: the load returns a listener fd.
    pub notify: bool,
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    }
}

fn op(o: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> (ScmpCompareOp, u64) {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // The spec's masked equality: value is the mask, valueTwo the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0))
        }
    }
}

fn scmp_err(what: &str) -> impl Fn(libseccomp::error::SeccompError) -> Error + '_ {
    move |e| Error::Config(format!("linux.seccomp: {what}: {e}"))
}

/// Compiles the profile with libseccomp.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled> {
    let default = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(scmp_err("defaultAction"))?;
    // berth sets no_new_privs itself, where the process order puts it.
    ctx.set_ctl_nnp(false).map_err(scmp_err("nnp"))?;
    for arch in s.architectures().iter().flatten() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(scmp_err(&format!("architecture {name}")))?;
        ctx.add_arch(a)
            .map_err(scmp_err(&format!("architecture {name}")))?;
    }
    // runc's rules: the agent learns of the listener through a write the
    // filtered process makes, so notify on write (or on everything) could
    // leave both waiting on each other.
    if matches!(s.default_action(), LinuxSeccompAction::ScmpActNotify) {
        return Err(Error::Config(
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be used as default action".into(),
        ));
    }
    for rule in s.syscalls().iter().flatten() {
        if matches!(rule.action(), LinuxSeccompAction::ScmpActNotify)
            && rule.names().iter().any(|n| n == "write")
        {
            return Err(Error::Config(
                "linux.seccomp.syscalls: SCMP_ACT_NOTIFY cannot be used for the write syscall"
                    .into(),
            ));
        }
    }
    let mut notify = false;
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        // A rule whose action is the default one adds nothing (and
        // libseccomp refuses it).
        if act == default {
            continue;
        }
        notify |= matches!(rule.action(), LinuxSeccompAction::ScmpActNotify);
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (o, datum) = op(a.op(), a.value(), a.value_two());
                ScmpArgCompare::new(a.index() as u32, o, datum)
            })
            .collect();
        // Several conditions on one argument cannot share a rule: as runc
        // does, each becomes a rule of its own (they OR).
        let mut indexes: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                // Newer than this libseccomp or kernel: runc skips these too.
                tracing::debug!("linux.seccomp: unknown syscall {name:?} skipped");
                continue;
            };
            let what = format!("syscalls {name}");
            if conds.is_empty() {
                ctx.add_rule(act, sys).map_err(scmp_err(&what))?;
            } else if repeated {
                for c in &conds {
                    ctx.add_rule_conditional(act, sys, std::slice::from_ref(c))
                        .map_err(scmp_err(&what))?;
                }
            } else {
                ctx.add_rule_conditional(act, sys, &conds)
                    .map_err(scmp_err(&what))?;
            }
        }
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            // A single-threaded init has no other threads to sync.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
        };
    }
    let mut mem = memfd()?;
    ctx.export_bpf(&mem).map_err(scmp_err("export"))?;
    let mut bpf = Vec::new();
    mem.rewind()
        .and_then(|_| mem.read_to_end(&mut bpf))
        .map_err(|e| Error::sys("read the seccomp program", e))?;
    let denies_by_default = !matches!(
        s.default_action(),
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
    );
    if denies_by_default {
        if let Some(max) = highest_named_syscall(s) {
            bpf = with_enosys_stub(&bpf, max);
        }
    }
    Ok(Compiled { bpf, flags, notify })
}

/// The highest native syscall number the profile names.
fn highest_named_syscall(s: &LinuxSeccomp) -> Option<u32> {
    s.syscalls()
        .iter()
        .flatten()
        .flat_map(|r| r.names())
        .filter_map(|n| ScmpSyscall::from_name(n).ok())
        .map(|sys| sys.as_raw_syscall())
        .filter(|n| *n >= 0)
        .max()
        .map(|n| n as u32)
}

// Classic BPF (linux/filter.h) and seccomp return values.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGT_K: u16 = 0x25;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_00b7;

fn sock_filter(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&code.to_ne_bytes());
    b[2] = jt;
    b[3] = jf;
    b[4..8].copy_from_slice(&k.to_ne_bytes());
    b
}

/// Prepends runc's ENOSYS stub: a native syscall numbered above every one
/// the profile names is newer than the profile, and fails with ENOSYS
/// rather than the default action, so that libc falls back (clone3 to
/// clone, for one) instead of seeing EPERM. Everything else falls through
/// to the profile's own program (classic BPF jumps are relative and
/// forward only, so prepending keeps them valid).
fn with_enosys_stub(bpf: &[u8], max: u32) -> Vec<u8> {
    let stub = [
        sock_filter(BPF_LD_W_ABS, 0, 0, 4),              // A = arch
        sock_filter(BPF_JEQ_K, 0, 4, AUDIT_ARCH_NATIVE), // another arch: to the profile
        sock_filter(BPF_LD_W_ABS, 0, 0, 0),              // A = syscall number
        sock_filter(BPF_JSET_K, 2, 0, X32_SYSCALL_BIT),  // x32: to the profile
        sock_filter(BPF_JGT_K, 0, 1, max),               // newer than the profile?
        sock_filter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    let mut out: Vec<u8> = stub.iter().flatten().copied().collect();
    out.extend_from_slice(bpf);
    out
}

fn memfd() -> Result<std::fs::File> {
    // SAFETY: memfd_create with a static name.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// [`compile`], through a cache under `cache_dir`: the file holds the
/// profile's JSON and its program, so a hash collision can only miss.
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &Path) -> Result<Compiled> {
    let key = serde_json::to_vec(s).map_err(|e| Error::Other(e.to_string()))?;
    let mut h = DefaultHasher::new();
    (crate::VERSION, ScmpArch::native() as u32, &key).hash(&mut h);
    let path = cache_dir.join(format!("seccomp-{:016x}", h.finish()));
    if let Ok(data) = std::fs::read(&path) {
        if let Some(c) = decode(&data, &key) {
            return Ok(c);
        }
    }
    let c = compile(s)?;
    // Best effort: write-then-rename, so concurrent creates never see half a file.
    let _ = std::fs::create_dir_all(cache_dir);
    let tmp = cache_dir.join(format!(".seccomp-{}.tmp", std::process::id()));
    let ok = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&encode(&c, &key)))
        .is_ok();
    if ok {
        let _ = std::fs::rename(&tmp, &path);
    } else {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(c)
}

fn encode(c: &Compiled, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&c.flags.to_le_bytes());
    out.push(u8::from(c.notify));
    out.extend_from_slice(&c.bpf);
    out
}

fn decode(data: &[u8], key: &[u8]) -> Option<Compiled> {
    let n = u64::from_le_bytes(data.get(..8)?.try_into().ok()?) as usize;
    let stored = data.get(8..8 + n)?;
    if stored != key {
        return None;
    }
    let rest = data.get(8 + n..)?;
    let flags = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let notify = *rest.get(4)? != 0;
    let bpf = rest.get(5..)?.to_vec();
    if bpf.is_empty() || bpf.len() % 8 != 0 {
        return None;
    }
    Some(Compiled { bpf, flags, notify })
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const u8,
}

/// Loads the program into this process (seccomp(2)); returns the notify
/// listener when the profile has SCMP_ACT_NOTIFY rules.
pub fn load(c: &Compiled) -> Result<Option<OwnedFd>> {
    let prog = SockFprog {
        len: (c.bpf.len() / 8) as libc::c_ushort,
        filter: c.bpf.as_ptr(),
    };
    let mut flags = c.flags;
    if c.notify {
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    // SAFETY: seccomp(2) with a valid sock_fprog over our buffer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const SockFprog,
        )
    };
    if r < 0 {
        return Err(Error::sys(
            "load linux.seccomp",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: with NEW_LISTENER the return value is a new fd.
    Ok(c.notify
        .then(|| unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
}

/// SCMP_ACT_NOTIFY: sends the listener fd and the container's state to the
/// agent at `listenerPath`, as runc does (a ContainerProcessState JSON,
/// fds: ["seccompFd"]).
pub fn send_listener(socket: RawFd, listener: &OwnedFd, state: &str) -> Result<()> {
    crate::tty::send_fd(socket, listener.as_raw_fd(), state)
}

/// What the process needs to put its filter in place.
pub struct Setup<'a> {
    pub program: &'a Compiled,
    /// The connected listenerPath socket and the state document to send
    /// with the listener fd.
    pub listener: Option<(RawFd, String)>,
}

impl Setup<'_> {
    /// Loads the filter and hands the notify listener to the agent.
    pub fn apply(&self) -> Result<()> {
        let listener = load(self.program)?;
        if let (Some(fd), Some((socket, state))) = (listener, &self.listener) {
            send_listener(*socket, &fd, state)?;
        }
        Ok(())
    }
}

/// The document runc sends to a seccomp agent (ContainerProcessState),
/// around the container's state; `pid` is the host PID of the filtered
/// process.
pub fn listener_state(state: &str, pid: i32, metadata: Option<&str>) -> String {
    let state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    serde_json::json!({
        "ociVersion": state.get("ociVersion").cloned().unwrap_or_default(),
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata.unwrap_or(""),
        "state": state,
    })
    .to_string()
}
