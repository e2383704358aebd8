//! The container's /etc/passwd and /etc/group, read from inside its root.

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
