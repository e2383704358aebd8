//! `/proc/self/mountinfo`, parsed (proc(5)): what the cgroup layout
//! detection, the rootfs setup and `--no-pivot` read about the mount table.

use std::path::PathBuf;

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the filesystem that is mounted (`/` for a full mount).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

/// Every well-formed line of a mountinfo text.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                return None;
            }
            Some(Entry {
                root: PathBuf::from(unescape(pre[3])),
                mount_point: PathBuf::from(unescape(pre[4])),
                fstype: post[0].to_string(),
                super_options: post[2].to_string(),
            })
        })
        .collect()
}

/// This process's mount table.
pub fn read() -> std::io::Result<Vec<Entry>> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse(&t))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let e = parse("36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw,errors=continue\nbad\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].root, PathBuf::from("/mnt1"));
        assert_eq!(e[0].mount_point, PathBuf::from("/mnt x"));
        assert_eq!(e[0].fstype, "ext3");
        assert_eq!(e[0].super_options, "rw,errors=continue");
    }
}
