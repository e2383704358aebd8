//! Crafted layer archives against the unpacker: nothing may land outside
//! the target directory, and whiteouts take the form the mode asks for.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_img::layer::{unpack, Mode, OVERLAY_OPAQUE_XATTR};
use common::Scratch;

/// Builds tar archives with raw names (the tar crate's path setters refuse
/// `..`, which is exactly what these tests need).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, name: &str, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    fn file(mut self, name: &str, data: &[u8]) -> Tar {
        let mut h = Self::header(tar::EntryType::Regular, name, data.len() as u64, 0o644);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn owned_file(mut self, name: &str, data: &[u8], uid: u64, gid: u64, mode: u32) -> Tar {
        let mut h = Self::header(tar::EntryType::Regular, name, data.len() as u64, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(mut self, name: &str, mode: u32) -> Tar {
        let mut h = Self::header(tar::EntryType::Directory, name, 0, mode);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Tar {
        let mut h = Self::header(kind, name, 0, 0o777);
        let raw = &mut h.as_old_mut().linkname;
        raw.fill(0);
        raw[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn fifo(mut self, name: &str) -> Tar {
        let mut h = Self::header(tar::EntryType::Fifo, name, 0, 0o600);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn xattr_file(mut self, name: &str, key: &str, value: &str) -> Tar {
        let k = format!("SCHILY.xattr.{key}");
        self.0
            .append_pax_extensions([(k.as_str(), value.as_bytes())])
            .unwrap();
        self.file(name, b"x")
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A target directory with a sibling "outside" that must stay untouched.
fn setup(s: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = s.path("root");
    let outside = s.path("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "original").unwrap();
    (root, outside)
}

fn untouched(outside: &Path) {
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "original"
    );
    let names: Vec<_> = std::fs::read_dir(outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("secret")],
        "something landed outside"
    );
}

#[test]
fn dotdot_and_absolute_paths_stay_inside() {
    let s = Scratch::new("dotdot");
    let (root, outside) = setup(&s);
    let tar = Tar::new()
        .file("../outside/secret", b"pwned")
        .file("../../../../outside/new", b"pwned")
        .file("/abs/file", b"abs")
        .file("a/../../b", b"b")
        .bytes();
    for mode in [Mode::Overlay, Mode::Flatten] {
        unpack(&tar[..], &root, mode).unwrap();
        untouched(&outside);
        assert_eq!(
            std::fs::read_to_string(root.join("outside/secret")).unwrap(),
            "pwned"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("outside/new")).unwrap(),
            "pwned"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("abs/file")).unwrap(),
            "abs"
        );
        assert_eq!(std::fs::read_to_string(root.join("b")).unwrap(), "b");
    }
}

#[test]
fn symlinks_cannot_redirect_later_entries() {
    let s = Scratch::new("symlinks");
    let (root, outside) = setup(&s);
    let out = outside.to_str().unwrap();
    // Through a symlink whose target exists inside the root: lands inside.
    let inside_target = Tar::new()
        .dir(out.trim_start_matches('/'), 0o755)
        .link(tar::EntryType::Symlink, "abs", out)
        .file("abs/secret", b"via absolute symlink")
        .link(tar::EntryType::Symlink, "rel", "../../../../../../../../")
        .file(&format!("rel{out}/new"), b"via relative symlink")
        .link(tar::EntryType::Symlink, "deep/up", "../..")
        .file("deep/up/escape", b"via nested")
        // A symlink replaced by a file is replaced, not written through.
        .link(tar::EntryType::Symlink, "victim", &format!("{out}/secret"))
        .file("victim", b"replaced")
        .bytes();
    unpack(&inside_target[..], &root, Mode::Overlay).unwrap();
    untouched(&outside);
    assert_eq!(std::fs::read_link(root.join("abs")).unwrap(), outside);
    let mirrored = root.join(outside.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(mirrored.join("secret")).unwrap(),
        "via absolute symlink"
    );
    assert_eq!(
        std::fs::read_to_string(mirrored.join("new")).unwrap(),
        "via relative symlink"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("escape")).unwrap(),
        "via nested"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("victim")).unwrap(),
        "replaced"
    );
    assert!(!std::fs::symlink_metadata(root.join("victim"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Through a symlink whose target does not exist inside: refused.
    let fresh = s.path("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let dangling = Tar::new()
        .link(tar::EntryType::Symlink, "abs", out)
        .file("abs/secret", b"x")
        .bytes();
    let err = unpack(&dangling[..], &fresh, Mode::Overlay)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("abs/secret") && err.contains("dangling"),
        "{err}"
    );
    untouched(&outside);
}

#[test]
fn hard_links_resolve_inside_or_fail() {
    let s = Scratch::new("hardlinks");
    let (root, outside) = setup(&s);
    let out = outside.to_str().unwrap();
    // A link to a file of the layer works and shares the inode.
    let good = Tar::new()
        .file("etc/data", b"d")
        .link(tar::EntryType::Link, "etc/alias", "etc/data")
        .bytes();
    unpack(&good[..], &root, Mode::Overlay).unwrap();
    let (a, b) = (
        std::fs::metadata(root.join("etc/data")).unwrap(),
        std::fs::metadata(root.join("etc/alias")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());

    for target in [
        format!("{out}/secret"),
        "../outside/secret".to_string(),
        "../../../../etc/passwd".to_string(),
    ] {
        let bad = Tar::new()
            .link(tar::EntryType::Link, "stolen", &target)
            .bytes();
        let err = unpack(&bad[..], &root, Mode::Overlay)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hard link target"), "{target}: {err}");
        assert!(!root.join("stolen").exists());
    }
    // Through a symlink that points out: still resolved inside, so missing.
    let via = Tar::new()
        .link(tar::EntryType::Symlink, "out", out)
        .link(tar::EntryType::Link, "stolen2", "out/secret")
        .bytes();
    assert!(unpack(&via[..], &root, Mode::Overlay).is_err());
    assert_eq!(
        std::fs::metadata(outside.join("secret")).unwrap().nlink(),
        1
    );
    untouched(&outside);
}

#[test]
fn whiteouts_for_overlay_and_flatten() {
    let s = Scratch::new("whiteouts");
    let lower = Tar::new()
        .file("keep", b"k")
        .file("gone", b"g")
        .file("dir/old", b"o")
        .file("odir/old1", b"1")
        .file("odir/old2", b"2")
        .bytes();
    let upper = Tar::new()
        .file(".wh.gone", b"")
        .file("dir/.wh.old", b"")
        .file("odir/new", b"n")
        .file("odir/.wh..wh..opq", b"")
        .bytes();

    // Overlay form: a 0:0 char device per whiteout, the opaque xattr.
    let layer = s.path("layer");
    std::fs::create_dir_all(&layer).unwrap();
    unpack(&upper[..], &layer, Mode::Overlay).unwrap();
    for wh in ["gone", "dir/old"] {
        let m = std::fs::symlink_metadata(layer.join(wh)).unwrap();
        assert!(
            std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()),
            "{wh}"
        );
        assert_eq!(m.rdev(), 0);
    }
    let mut buf = [0u8; 4];
    let p = std::ffi::CString::new(layer.join("odir").to_str().unwrap()).unwrap();
    let k = std::ffi::CString::new(OVERLAY_OPAQUE_XATTR).unwrap();
    // SAFETY: valid strings and buffer.
    let n = unsafe { libc::getxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(&buf[..n as usize], b"y");
    assert!(layer.join("odir/new").exists());

    // Flattened: the deletions happen; the opaque dir keeps only this
    // layer's entries.
    let flat = s.path("flat");
    std::fs::create_dir_all(&flat).unwrap();
    unpack(&lower[..], &flat, Mode::Flatten).unwrap();
    unpack(&upper[..], &flat, Mode::Flatten).unwrap();
    assert!(flat.join("keep").exists());
    assert!(
        !flat.join("gone").exists() && !flat.join("dir/old").exists() && flat.join("dir").is_dir()
    );
    let mut odir: Vec<_> = std::fs::read_dir(flat.join("odir"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    odir.sort();
    assert_eq!(odir, ["new"]);
}

#[test]
fn metadata_is_kept() {
    let s = Scratch::new("metadata");
    let (root, _) = setup(&s);
    let tar = Tar::new()
        .dir("srv", 0o750)
        .owned_file("srv/suid", b"#!/bin/sh\n", 1234, 5678, 0o4755)
        .fifo("run/fifo")
        .xattr_file("attr", "user.berth", "hello")
        .link(tar::EntryType::Symlink, "srv/link", "suid")
        .bytes();
    unpack(&tar[..], &root, Mode::Overlay).unwrap();
    let m = std::fs::metadata(root.join("srv/suid")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (1234, 5678, 0o4755)
    );
    assert_eq!(m.mtime(), 1_000_000);
    let d = std::fs::metadata(root.join("srv")).unwrap();
    assert_eq!(d.permissions().mode() & 0o7777, 0o750);
    // Directory times are set after their contents are written.
    assert_eq!(d.mtime(), 1_000_000);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
    ));
    assert_eq!(
        std::fs::read_link(root.join("srv/link")).unwrap(),
        Path::new("suid")
    );
    let mut buf = [0u8; 16];
    let p = std::ffi::CString::new(root.join("attr").to_str().unwrap()).unwrap();
    // SAFETY: valid strings and buffer.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"user.berth".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(&buf[..n.max(0) as usize], b"hello");
}

#[test]
fn layers_cannot_set_overlay_xattrs() {
    let s = Scratch::new("ovlxattr");
    let (root, _) = setup(&s);
    let tar = Tar::new()
        .xattr_file("f", "trusted.overlay.redirect", "/etc")
        .bytes();
    unpack(&tar[..], &root, Mode::Overlay).unwrap();
    let p = std::ffi::CString::new(root.join("f").to_str().unwrap()).unwrap();
    // SAFETY: valid strings; size query only.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"trusted.overlay.redirect".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    assert!(n < 0, "overlay xattr from a layer was applied");
}
