//! The container's /etc/passwd and /etc/group, read from inside its root,
//! and the range every uid and gid must be in.

use crate::error::{Error, Result};

/// The largest uid or gid berth accepts, as runc: `(uid_t)-1` means
/// "leave unchanged" to setresuid(2), so 4294967295 would run the process
/// as whoever berth is (root), and ids above 2^31-1 are not portable.
pub const MAX_ID: u32 = i32::MAX as u32;

fn check_id(field: &str, id: u32) -> Result<()> {
    if id > MAX_ID {
        return Err(Error::Config(format!(
            "{field} {id}: uids and gids must be in range 0-{MAX_ID}"
        )));
    }
    Ok(())
}

/// config.md "process.user": uid, gid and additionalGids in range.
pub fn validate_ids(user: &oci_spec::runtime::User) -> Result<()> {
    check_id("process.user.uid", user.uid())?;
    check_id("process.user.gid", user.gid())?;
    for g in user.additional_gids().iter().flatten() {
        check_id("process.user.additionalGids", *g)?;
    }
    Ok(())
}

/// config-linux.md "User namespace mappings": ids in range, sizes non-zero.
pub fn validate_mappings(field: &str, maps: &[oci_spec::runtime::LinuxIdMapping]) -> Result<()> {
    for m in maps {
        check_id(&format!("{field}.containerID"), m.container_id())?;
        check_id(&format!("{field}.hostID"), m.host_id())?;
        if m.size() == 0 {
            return Err(Error::Config(format!("{field}.size: must not be 0")));
        }
    }
    Ok(())
}

/// One /etc/passwd entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

pub fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(Passwd {
                name: f[0].into(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].into(),
            })
        })
        .collect()
}

/// The home directory of `uid` in the current root's /etc/passwd.
pub fn home_of(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    parse_passwd(&text)
        .into_iter()
        .find(|p| p.uid == uid)
        .map(|p| p.home)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_range() {
        assert!(check_id("x", 0).is_ok());
        assert!(check_id("x", MAX_ID).is_ok());
        let e = check_id("process.user.uid", u32::MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            "process.user.uid 4294967295: uids and gids must be in range 0-2147483647"
        );
    }

    #[test]
    fn passwd() {
        let p = parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\n# c\nbad\nwww:x:33:33::/var/www:/bin/false\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            Passwd {
                name: "www".into(),
                uid: 33,
                gid: 33,
                home: "/var/www".into()
            }
        );
    }
}

/// One /etc/group entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Group {
                name: f[0].into(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// A user as `exec -u` gives it, resolved against the container's files.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    /// Groups the user is a member of in /etc/group (when named).
    pub additional_gids: Vec<u32>,
}

/// Resolves `user[:group]`, each a number or a name, as runc does: a named
/// user brings its primary group and its /etc/group memberships.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Resolved, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (uid, primary, name) = match u.parse::<u32>() {
        Ok(uid) => {
            let entry = users.iter().find(|p| p.uid == uid);
            (
                uid,
                entry.map_or(0, |p| p.gid),
                entry.map(|p| p.name.clone()),
            )
        }
        Err(_) => {
            let p = users.iter().find(|p| p.name == u).ok_or_else(|| {
                format!("user {u:?}: no such user in the container's /etc/passwd")
            })?;
            (p.uid, p.gid, Some(p.name.clone()))
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|gr| gr.name == g)
                .map(|gr| gr.gid)
                .ok_or_else(|| {
                    format!("group {g:?}: no such group in the container's /etc/group")
                })?,
        },
    };
    let additional_gids = match &name {
        Some(n) => groups
            .iter()
            .filter(|gr| gr.members.contains(n))
            .map(|gr| gr.gid)
            .collect(),
        None => Vec::new(),
    };
    Ok(Resolved {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:33:34::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:34:\nadm:x:4:web,other\nvideo:x:44:web\n";

    #[test]
    fn numbers_names_and_groups() {
        assert_eq!(
            resolve("1000", PASSWD, GROUP).unwrap(),
            Resolved {
                uid: 1000,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve("1000:7", PASSWD, GROUP).unwrap(),
            Resolved {
                uid: 1000,
                gid: 7,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve("web", PASSWD, GROUP).unwrap(),
            Resolved {
                uid: 33,
                gid: 34,
                additional_gids: vec![4, 44]
            }
        );
        assert_eq!(resolve("web:adm", PASSWD, GROUP).unwrap().gid, 4);
        assert_eq!(resolve("33", PASSWD, GROUP).unwrap().gid, 34);
        assert!(resolve("nobody-here", PASSWD, GROUP)
            .unwrap_err()
            .contains("nobody-here"));
        assert!(resolve("web:nogroup", PASSWD, GROUP)
            .unwrap_err()
            .contains("nogroup"));
    }
}
