//! `USER` resolution the way docker does it: names looked up in the image's
//! own /etc/passwd and /etc/group (read inside the rootfs), numbers taken
//! as they are, and the user's supplementary groups added.

use std::io::Read;
use std::path::Path;

use nix::fcntl::OFlag;

use crate::error::{Error, Result};
use crate::inroot::Root;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
}

fn read_inside(root: &Root, rel: &str) -> String {
    let Ok(fd) = root.open_at(Path::new(rel), OFlag::O_RDONLY) else {
        return String::new();
    };
    let mut s = String::new();
    let _ = std::fs::File::from(fd)
        .take(16 << 20)
        .read_to_string(&mut s);
    s
}

struct Entry<'a> {
    name: &'a str,
    id: u32,
    gid_or_members: &'a str,
    home: &'a str,
}

fn passwd(text: &str) -> Vec<Entry<'_>> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| Entry {
                name: f[0],
                id: f[2].parse().unwrap_or(u32::MAX),
                gid_or_members: f[3],
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .filter(|e| e.id != u32::MAX)
        .collect()
}

fn group(text: &str) -> Vec<Entry<'_>> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3).then(|| Entry {
                name: f[0],
                id: f[2].parse().unwrap_or(u32::MAX),
                gid_or_members: f.get(3).copied().unwrap_or(""),
                home: "",
            })
        })
        .filter(|e| e.id != u32::MAX)
        .collect()
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, empty = root)
/// against the rootfs at `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ExecUser> {
    let root = Root::open(rootfs).map_err(|e| Error::Path(rootfs.into(), e.to_string()))?;
    resolve_with(
        &read_inside(&root, "etc/passwd"),
        &read_inside(&root, "etc/group"),
        spec,
    )
}

pub fn resolve_with(passwd_text: &str, group_text: &str, spec: &str) -> Result<ExecUser> {
    let users = passwd(passwd_text);
    let groups = group(group_text);
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: None,
    };
    let mut user_name = None;
    if !u.is_empty() {
        let found = match u.parse::<u32>() {
            Ok(n) => users.iter().find(|e| e.id == n),
            Err(_) => users.iter().find(|e| e.name == u),
        };
        match (found, u.parse::<u32>()) {
            (Some(e), _) => {
                out.uid = e.id;
                out.gid = e.gid_or_members.parse().unwrap_or(0);
                out.home = Some(e.home.to_string()).filter(|h| !h.is_empty());
                user_name = Some(e.name);
            }
            (None, Ok(n)) => out.uid = n,
            (None, Err(_)) => {
                return Err(Error::invalid(
                    "user",
                    format!("unable to find user {u}: no matching entries in passwd file"),
                ))
            }
        }
    }
    match g {
        Some(g) if !g.is_empty() => {
            out.gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.id)
                    .ok_or_else(|| {
                        Error::invalid(
                            "user",
                            format!("unable to find group {g}: no matching entries in group file"),
                        )
                    })?,
            };
        }
        _ => {
            // Only a user named without an explicit group gets its
            // supplementary groups, as docker does.
            if let Some(name) = user_name {
                for e in &groups {
                    if e.gid_or_members.split(',').any(|m| m.trim() == name) && e.id != out.gid {
                        out.additional_gids.push(e.id);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nweb:x:1000:\nstaff:x:50:web,other\nwheel:x:10:root\n";

    #[test]
    fn resolves_like_docker() {
        let r = |s| resolve_with(PASSWD, GROUP, s);
        assert_eq!(r("").unwrap().uid, 0);
        let web = r("web").unwrap();
        assert_eq!(
            (web.uid, web.gid, web.additional_gids.clone()),
            (1000, 1000, vec![50])
        );
        assert_eq!(web.home.as_deref(), Some("/home/web"));
        assert_eq!(r("1000").unwrap().gid, 1000);
        let n = r("4242").unwrap();
        assert_eq!((n.uid, n.gid), (4242, 0));
        let wg = r("web:staff").unwrap();
        assert_eq!((wg.uid, wg.gid, wg.additional_gids.len()), (1000, 50, 0));
        assert_eq!(r("4242:77").unwrap().gid, 77);
        assert!(r("nobody")
            .unwrap_err()
            .to_string()
            .contains("unable to find user nobody"));
        assert!(r("web:nogroup")
            .unwrap_err()
            .to_string()
            .contains("unable to find group"));
        assert_eq!(r("root").unwrap().additional_gids, vec![10]);
    }
}
