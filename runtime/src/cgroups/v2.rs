//! cgroup v2 specifics: cgroup.kill, cgroup.freeze, and the device
//! allow-list as an eBPF program (v2 has no devices.allow file).

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::write;
use crate::devices::DeviceRule;
use crate::error::{Error, Result};

/// Frozen (or freezing), by its own cgroup.freeze or an ancestor's (which
/// `cgroup.events` reports).
pub fn is_frozen(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        || fs::read_to_string(dir.join("cgroup.events"))
            .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1"))
}

/// Writes `cgroup.freeze` and waits for `cgroup.events` to say it happened.
pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let events = dir.join("cgroup.events");
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..1000 {
        let now = fs::read_to_string(&events).map_err(|e| Error::path("read", &events, e))?;
        if now.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(10));
    }
    Err(Error::Other(format!(
        "{}: timed out waiting for {want}",
        events.display()
    )))
}

/// SIGKILLs every process in the cgroup at once (Linux 5.14+).
pub fn kill(dir: &Path) -> Result<()> {
    write(&dir.join("cgroup.kill"), "1")
}

// eBPF encoding (linux/bpf.h, linux/bpf_common.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_EXIT: u8 = 0x95;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// Compiles the rules into a BPF_PROG_TYPE_CGROUP_DEVICE program. The last
/// matching rule decides, as with v1's list; no match denies.
///
/// Registers: r2 = device type, r3 = requested access, r4 = major, r5 = minor
/// (from `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`).
pub fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut block = Vec::new();
        // Each check jumps past the rest of this block when it fails; the
        // offsets are patched once the block length is known.
        let mut jumps = Vec::new();
        let typ = match rule.typ {
            'c' => Some(2),
            'b' => Some(1),
            _ => None,
        };
        if let Some(t) = typ {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 2, 0, 0, t));
        }
        let access = rule.access_mask();
        if access != 0b111 {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            if rule.allow {
                // An allow rule must cover every requested bit, as a v1
                // exception must.
                block.push(insn(ALU32_AND_K, 1, 0, 0, !access as i32));
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, 1, 0, 0, 0));
            } else {
                // A deny rule matches as soon as one requested bit is
                // denied, as a v1 deny exception does.
                block.push(insn(ALU32_AND_K, 1, 0, 0, access as i32));
                jumps.push(block.len());
                block.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(major) = rule.major {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let unconditional = jumps.is_empty();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        prog.extend(block);
        // Everything after a rule that matches all devices is unreachable,
        // and the verifier refuses unreachable code.
        if unconditional {
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<i32> {
    // SAFETY: attr is a properly sized, zero-padded bpf_attr prefix.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

/// Loads the device program and attaches it to the cgroup at `dir`.
pub fn apply_devices(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let prog = compile(rules);
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let prog_fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(e) => {
            // Load again with the verifier's log, to say why.
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let last = text.lines().collect::<Vec<_>>().join(" / ");
            return Err(Error::sys(
                format!("load the cgroup2 device eBPF program ({last})"),
                e,
            ));
        }
    };
    // SAFETY: the kernel just returned this fd to us.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(prog_fd) };
    let cg = fs::File::open(dir).map_err(|e| Error::path("open", dir, e))?;
    let mut attach = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attach)
        .map_err(|e| Error::path("attach the device eBPF program to", dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the compiled program the way the kernel would, for the subset of
    /// instructions `compile` emits.
    fn run(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
                JMP_JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                JMP_JEQ_K => {
                    if r[dst] == i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JMP_EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_wins() {
        let rules = crate::devices::cgroup_rules(None);
        let target = crate::devices::Emulator::from_rules(&rules).unwrap();
        let prog = compile(&target.as_rules());
        // /dev/null read+write allowed, /dev/sda (b 8:0) denied, mknod of any allowed.
        assert_eq!(run(&prog, 2, 2 | 4, 1, 3), 1);
        assert_eq!(run(&prog, 1, 2, 8, 0), 0);
        assert_eq!(run(&prog, 1, 1, 8, 0), 1);
        assert_eq!(run(&prog, 2, 2, 136, 7), 1);
        assert_eq!(run(&prog, 2, 2, 4, 1), 0);
        // /dev/kmsg (c 1:11) is not in the defaults.
        assert_eq!(run(&prog, 2, 4, 1, 11), 0);
    }

    #[test]
    fn deny_rules_match_on_any_denied_bit() {
        let e = crate::devices::Emulator::from_rules(&[
            DeviceRule {
                allow: true,
                typ: 'a',
                major: None,
                minor: None,
                access: "rwm".into(),
            },
            DeviceRule {
                allow: false,
                typ: 'c',
                major: Some(1),
                minor: Some(11),
                access: "w".into(),
            },
        ])
        .unwrap();
        let prog = compile(&e.as_rules());
        // read+write of c 1:11: the write bit is denied, so all of it is.
        assert_eq!(run(&prog, 2, 2 | 4, 1, 11), 0);
        assert_eq!(run(&prog, 2, 2, 1, 11), 1);
        assert_eq!(run(&prog, 1, 2 | 4, 8, 0), 1);
    }
}
