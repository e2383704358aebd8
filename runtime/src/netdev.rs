//! Network devices moved into the container (config-linux.md "Network
//! Devices"), over rtnetlink.
//!
//! Hand-rolled rather than through the netlink crates: three request types
//! (get addresses, change a link, add an address) do not justify their
//! weight on a binary whose start time is the product.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::LinuxNetDevice;

use crate::error::{Context, Error, Result};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;

/// An address to carry over: what RTM_NEWADDR needs to recreate it.
#[derive(Debug, Clone)]
struct Address {
    family: u8,
    prefixlen: u8,
    flags: u8,
    attrs: Vec<(u16, Vec<u8>)>,
}

struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, typ: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align(buf.len()), 0);
}

fn parse_attrs(mut data: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let typ = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((typ, data[4..len].to_vec()));
        data = &data[align(len).min(data.len())..];
    }
    out
}

impl Netlink {
    fn open() -> Result<Netlink> {
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(Error::sys(
                "open rtnetlink socket",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: the kernel just returned this fd.
        Ok(Netlink {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 0,
        })
    }

    /// Sends one request (header filled in here) and collects the replies
    /// until the ACK or DONE; an error reply becomes an Err.
    fn request(
        &mut self,
        typ: u16,
        flags: u16,
        body: &[u8],
    ) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&typ.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: send(2) of our buffer on our socket.
        if unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: recv(2) into our buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut data = &buf[..n as usize];
            while data.len() >= 16 {
                let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
                let typ = u16::from_ne_bytes([data[4], data[5]]);
                if len < 16 || len > data.len() {
                    break;
                }
                let payload = &data[16..len];
                match typ {
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
                        return if errno == 0 {
                            Ok(replies)
                        } else {
                            Err(std::io::Error::from_raw_os_error(-errno))
                        };
                    }
                    _ => replies.push((typ, payload.to_vec())),
                }
                data = &data[align(len).min(data.len())..];
            }
        }
    }

    /// The permanent, global addresses of interface `index`.
    fn addresses(&mut self, index: u32) -> std::io::Result<Vec<Address>> {
        let ifaddrmsg = [0u8; 8]; // family AF_UNSPEC: all of them
        let mut out = Vec::new();
        for (_, p) in self.request(RTM_GETADDR, NLM_F_DUMP, &ifaddrmsg)? {
            if p.len() < 8 || u32::from_ne_bytes(p[4..8].try_into().unwrap()) != index {
                continue;
            }
            let (family, prefixlen, flags8, scope) = (p[0], p[1], p[2], p[3]);
            let attrs = parse_attrs(&p[8..]);
            let flags = attrs
                .iter()
                .find(|(t, _)| *t == IFA_FLAGS)
                .and_then(|(_, d)| {
                    d.get(0..4)
                        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
                })
                .unwrap_or(u32::from(flags8));
            if flags & IFA_F_PERMANENT == 0 || scope != RT_SCOPE_UNIVERSE {
                continue;
            }
            let keep = attrs
                .into_iter()
                .filter(|(t, _)| matches!(*t, IFA_ADDRESS | IFA_LOCAL))
                .collect();
            out.push(Address {
                family,
                prefixlen,
                flags: flags8,
                attrs: keep,
            });
        }
        Ok(out)
    }

    /// RTM_NEWLINK on an existing link: `ifinfomsg` plus attributes.
    fn set_link(
        &mut self,
        index: u32,
        flags: u32,
        change: u32,
        attrs: &[(u16, &[u8])],
    ) -> std::io::Result<()> {
        let mut body = Vec::new();
        body.extend_from_slice(&[0u8, 0, 0, 0]); // family, pad, type
        body.extend_from_slice(&(index as i32).to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&change.to_ne_bytes());
        for (t, d) in attrs {
            push_attr(&mut body, *t, d);
        }
        self.request(RTM_NEWLINK, NLM_F_ACK, &body).map(drop)
    }

    fn add_address(&mut self, index: u32, a: &Address) -> std::io::Result<()> {
        let mut body = vec![a.family, a.prefixlen, a.flags, RT_SCOPE_UNIVERSE];
        body.extend_from_slice(&index.to_ne_bytes());
        for (t, d) in &a.attrs {
            push_attr(&mut body, *t, d);
        }
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &body)
            .map(drop)
    }
}

fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Checked before anything is created: every device must exist on the host.
pub fn validate(devices: &HashMap<String, LinuxNetDevice>) -> Result<()> {
    for name in devices.keys() {
        if if_index(name).is_none() {
            return Err(Error::Config(format!(
                "linux.netDevices: {name}: no such network device on the host"
            )));
        }
    }
    Ok(())
}

/// Moves each device into the network namespace of `pid`, renamed, with
/// its permanent global addresses, and sets it up.
pub fn move_into(pid: i32, devices: &HashMap<String, LinuxNetDevice>) -> Result<()> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::path("open", format!("/proc/{pid}/ns/net"), e))?;
    let mut host = Netlink::open()?;
    let mut theirs = netlink_in(&ns)?;
    for (host_name, dev) in devices {
        let index = if_index(host_name).ok_or_else(|| {
            Error::Config(format!(
                "linux.netDevices: {host_name}: no such network device"
            ))
        })?;
        let new_name = dev.name().clone().unwrap_or_else(|| host_name.clone());
        let what =
            || format!("linux.netDevices: move {host_name} into the container as {new_name}");
        let addresses = host.addresses(index).ctx(what)?;
        let mut name = new_name.clone().into_bytes();
        name.push(0);
        let nsfd = (ns.as_raw_fd() as u32).to_ne_bytes();
        host.set_link(
            index,
            0,
            0,
            &[(IFLA_NET_NS_FD, &nsfd), (IFLA_IFNAME, &name)],
        )
        .ctx(what)?;
        // The kernel keeps the index unless it clashes in the new namespace;
        // look it up there by name (a `%d` template leaves only the index).
        let inner = inner_index(&ns, &new_name).unwrap_or(index);
        for a in &addresses {
            match theirs.add_address(inner, a) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(Error::sys(format!("{}: restore an address", what()), e)),
            }
        }
        theirs
            .set_link(inner, libc::IFF_UP as u32, libc::IFF_UP as u32, &[])
            .ctx(|| format!("set {new_name} up in the container"))?;
    }
    Ok(())
}

/// A netlink socket bound to another network namespace: sockets belong to
/// the namespace they were made in, so switch, open, switch back.
fn netlink_in(ns: &File) -> Result<Netlink> {
    let own =
        File::open("/proc/self/ns/net").map_err(|e| Error::path("open", "/proc/self/ns/net", e))?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .ctx(|| "enter the container's network namespace")?;
    let sock = Netlink::open();
    nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .ctx(|| "return to the host network namespace")?;
    sock
}

/// if_nametoindex answers for the caller's network namespace: ask from inside.
fn inner_index(ns: &File, name: &str) -> Option<u32> {
    let own = File::open("/proc/self/ns/net").ok()?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
    let index = if_index(name);
    nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
    index
}
