//! IPv4 subnets: parsing, overlap, and the choice of a free one for a new
//! network (one no other berth-img network and no route of the host
//! uses, as podman chooses).

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// An IPv4 network: `10.87.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Net {
    fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The first host address: the gateway docker and the bridge plugin
    /// pick.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = Error;
    fn from_str(s: &str) -> Result<Ipv4Net> {
        let bad = || {
            Error::invalid(
                "--subnet",
                format!("{s:?}: want an IPv4 CIDR like 10.86.1.0/24"),
            )
        };
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        // A bridge needs a gateway, a container and room for both.
        if !(8..=30).contains(&prefix_len) {
            return Err(Error::invalid(
                "--subnet",
                format!("{s:?}: the prefix length must be 8 to 30"),
            ));
        }
        Ok(Ipv4Net { addr, prefix_len })
    }
}

/// The routes of the current network namespace (`/proc/net/route`), the
/// default route left out: a subnet on one of them would hide part of the
/// host's network.
pub fn host_routes() -> Vec<Ipv4Net> {
    let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse_routes(&table)
}

fn parse_routes(table: &str) -> Vec<Ipv4Net> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Destination and Mask are little-endian hex.
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then(|| Ipv4Net {
                addr: Ipv4Addr::from(dst),
                prefix_len: mask.count_ones() as u8,
            })
        })
        .collect()
}

/// The subnet for a new network: `preferred` if free, else the first free
/// /24 of 10.86.0.0/16.
pub fn choose(preferred: Option<Ipv4Net>, used: &[Ipv4Net]) -> Result<Ipv4Net> {
    let free = |n: &Ipv4Net| !used.iter().any(|u| u.overlaps(n));
    if let Some(p) = preferred.filter(free) {
        return Ok(p);
    }
    (0..=255u8)
        .map(|i| Ipv4Net {
            addr: Ipv4Addr::new(10, 86, i, 0),
            prefix_len: 24,
        })
        .find(free)
        .ok_or_else(|| Error::Other("no free subnet left in 10.86.0.0/16 (use --subnet)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let n = net("10.87.3.7/16");
        assert_eq!(n.to_string(), "10.87.0.0/16");
        assert_eq!(n.first_host(), Ipv4Addr::new(10, 87, 0, 1));
        assert!(n.contains(Ipv4Addr::new(10, 87, 255, 1)));
        assert!(!n.contains(Ipv4Addr::new(10, 88, 0, 1)));
        assert!(n.overlaps(&net("10.87.5.0/24")) && net("10.87.5.0/24").overlaps(&n));
        assert!(!n.overlaps(&net("10.86.0.0/24")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/24",
            "x/24",
            "10.0.0.0/31",
        ] {
            let e = bad.parse::<Ipv4Net>().unwrap_err().to_string();
            assert!(e.starts_with("invalid --subnet") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn routes_from_proc() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
berth0\t0000570A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_routes(table),
            [net("10.0.2.0/24"), net("10.87.0.0/16")]
        );
    }

    #[test]
    fn choice_avoids_what_is_used() {
        let used = [
            net("10.86.0.0/24"),
            net("10.86.1.0/24"),
            net("10.87.0.0/16"),
        ];
        assert_eq!(choose(None, &used).unwrap(), net("10.86.2.0/24"));
        assert_eq!(
            choose(Some(net("10.87.0.0/16")), &used).unwrap(),
            net("10.86.2.0/24")
        );
        assert_eq!(
            choose(Some(net("10.99.0.0/16")), &used).unwrap(),
            net("10.99.0.0/16")
        );
        assert!(choose(None, &[net("10.0.0.0/8")]).is_err());
    }
}
