//! `/etc/hosts` and `/etc/resolv.conf` of containers with a network of
//! their own. Names on a user network resolve through `/etc/hosts` (see
//! the module doc of [`super`] for why), so the file lists the container
//! itself and every container that shares a user network with it.

use std::net::Ipv4Addr;

/// What docker writes before the container's own entries.
const HEADER: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// One line of the file: an address and the names it answers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// Renders a hosts file: localhost, the container's own addresses
/// (`own`: its hostname, and on user networks its name and aliases), then
/// its peers on user networks. A name is listed once, at its first
/// address, so a peer on two shared networks resolves to one of them and
/// a peer cannot shadow the container's own names.
pub fn render(own: &[Entry], peers: &[Entry]) -> String {
    let mut out = String::from(HEADER);
    let mut seen: Vec<&str> = vec!["localhost"];
    for (i, e) in own.iter().chain(peers).enumerate() {
        if i == own.len() && !peers.is_empty() {
            out.push_str("# containers on the same user networks (berth-img)\n");
        }
        let names: Vec<&str> = e
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty() && !seen.contains(n))
            .collect();
        if names.is_empty() {
            continue;
        }
        seen.extend(&names);
        out.push_str(&format!("{}\t{}\n", e.ip, names.join(" ")));
    }
    out
}

/// The host's resolv.conf for a container on a bridge: nameservers on
/// loopback (systemd-resolved's 127.0.0.53, a local dnsmasq) are
/// unreachable from its namespace and dropped; with none left, docker's
/// fallback (Google's public resolvers) is used, as docker does.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            let local = addr
                .parse::<std::net::IpAddr>()
                .map_or(true, |a| a.is_loopback());
            if local {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ip: [u8; 4], names: &[&str]) -> Entry {
        Entry {
            ip: ip.into(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn hosts_lists_self_then_peers_once() {
        let own = [e([10, 86, 0, 2], &["a1b2c3d4e5f6", "web", "www"])];
        let peers = [
            e([10, 86, 0, 3], &["db", "database"]),
            // db again on a second shared network, and a peer claiming
            // our name: neither is listed again.
            e([10, 86, 1, 3], &["db", "database"]),
            e([10, 86, 0, 9], &["web", "cache"]),
        ];
        let h = render(&own, &peers);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n::1\t"), "{h}");
        let tail: Vec<&str> = h.lines().skip(6).collect();
        assert_eq!(
            tail,
            [
                "10.86.0.2\ta1b2c3d4e5f6 web www",
                "# containers on the same user networks (berth-img)",
                "10.86.0.3\tdb database",
                "10.86.0.9\tcache",
            ]
        );
        // The default bridge: the container alone, no peers.
        let h = render(&[e([10, 87, 0, 2], &["a1b2c3d4e5f6"])], &[]);
        assert!(
            h.ends_with("ip6-allrouters\n10.87.0.2\ta1b2c3d4e5f6\n"),
            "{h}"
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let r = resolv_conf(
            "# hi\nsearch example.org\nnameserver 127.0.0.53\nnameserver 10.0.2.3\noptions edns0\n",
        );
        assert_eq!(
            r,
            "# hi\nsearch example.org\nnameserver 10.0.2.3\noptions edns0\n"
        );
        let r = resolv_conf("nameserver 127.0.0.53\nnameserver ::1\n");
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
}
