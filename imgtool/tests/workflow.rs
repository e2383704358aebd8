//! The docker image workflow around build: commit, save/load, export,
//! import, and containers (run, ps, logs, exec, stop, rm, cp).

mod common;

use std::process::Command;

use common::*;

#[test]
fn commit_export_save_and_load() {
    let s = Scratch::new("workflow-archive");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:test");
    let b = s.path("b");
    img.ok(&[
        "bundle",
        "busybox:test",
        b.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo committed > /etc/motd; rm /bin/vi",
    ]);
    run_ok(&s, &b, "commit-src");
    img.ok(&[
        "commit",
        b.to_str().unwrap(),
        "busybox:committed",
        "-m",
        "a change",
    ]);
    // The new layer holds the change and the deletion, not the runtime's
    // mount points (the image had no /etc/hosts).
    let c = inspect(&img, "busybox:committed");
    let top = c["manifest"]["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(img.root.join("blobs/sha256").join(&top[7..]))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("etc/motd") && listing.contains("bin/.wh.vi"),
        "{listing}"
    );
    assert!(
        !listing.contains("etc/hosts") && !listing.contains("proc"),
        "{listing}"
    );
    assert_eq!(
        c["config"]["history"].as_array().unwrap().last().unwrap()["comment"],
        "a change"
    );

    // export: the flattened rootfs as it is now.
    let exported = s.path("export.tar");
    img.ok(&[
        "export",
        b.to_str().unwrap(),
        "-o",
        exported.to_str().unwrap(),
    ]);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l == "etc/motd") && !listing.lines().any(|l| l == "bin/vi"),
        "{listing}"
    );
    img.ok(&["rm-bundle", b.to_str().unwrap()]);

    // import of the export gives a runnable one-layer image.
    img.ok(&[
        "import",
        exported.to_str().unwrap(),
        "flat:1",
        "-c",
        "CMD [\"cat\", \"/etc/motd\"]",
    ]);
    let fb = s.path("flat");
    img.ok(&["bundle", "flat:1", fb.to_str().unwrap()]);
    assert_eq!(run_ok(&s, &fb, "flat").trim(), "committed");
    img.ok(&["rm-bundle", fb.to_str().unwrap()]);

    // save → load round trip into an empty store, and peers read the file.
    let saved = s.path("save.tar");
    img.ok(&[
        "save",
        "busybox:committed",
        "busybox:test",
        "-o",
        saved.to_str().unwrap(),
    ]);
    let sk = Command::new("skopeo")
        .arg("inspect")
        .arg(format!(
            "docker-archive:{}:busybox:committed",
            saved.display()
        ))
        .output()
        .unwrap();
    assert!(sk.status.success(), "skopeo: {}", text(&sk));
    let sk: serde_json::Value = serde_json::from_slice(&sk.stdout).unwrap();
    assert_eq!(sk["Layers"].as_array().unwrap().len(), 2);
    // podman (vfs storage, private roots) loads it as docker would.
    let pod = s.path("podman");
    // podman wants a short runroot.
    let runroot = std::path::PathBuf::from(format!("/tmp/bp{}", std::process::id()));
    let podman = |args: &[&str]| {
        Command::new("timeout")
            .args(["120", "podman", "--root"])
            .arg(pod.join("root"))
            .arg("--runroot")
            .arg(&runroot)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let o = podman(&["load", "-i", saved.to_str().unwrap()]);
    assert!(o.status.success(), "podman load: {}", text(&o));
    let o = podman(&["images", "--format", "{{.ID}} {{.Tag}}"]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    let config_id = inspect(&img, "busybox:committed")["manifest"]["config"]["digest"]
        .as_str()
        .unwrap()[7..19]
        .to_string();
    let _ = std::fs::remove_dir_all(&runroot);
    assert!(
        listed.contains(&format!("{config_id} committed")),
        "{listed}"
    );

    let other = Img::new(&s, "other");
    let out = other.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: docker.io/library/busybox:committed"),
        "{out}"
    );
    assert_eq!(inspect(&other, "busybox:committed")["config"], c["config"]);
    let ob = s.path("ob");
    other.ok(&[
        "bundle",
        "busybox:committed",
        ob.to_str().unwrap(),
        "--",
        "cat",
        "/etc/motd",
    ]);
    assert_eq!(run_ok(&s, &ob, "loaded").trim(), "committed");
    other.ok(&["rm-bundle", ob.to_str().unwrap()]);

    // An archive skopeo wrote (OCI layout) loads too.
    let oci = s.path("oci.tar");
    let st = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("docker-archive:{}:busybox:test", saved.display()))
        .arg(format!(
            "oci-archive:{}:example.org/copied:v1",
            oci.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let third = Img::new(&s, "third");
    let out = third.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert!(out.contains("Loaded image"), "{out}");
    assert!(third
        .fail(&[
            "load",
            "-i",
            b.parent().unwrap().join("nonexistent").to_str().unwrap()
        ])
        .contains("nonexistent"));
}

#[test]
fn containers_run_exec_logs_cp_stop_rm() {
    let s = Scratch::new("workflow-containers");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:test");
    let name = format!("c{}", std::process::id());
    // --net none: these tests run in the host's network namespace, which
    // the default bridge would change (tests/network.rs makes its own).
    img.ok(&[
        "run",
        "-d",
        "--net",
        "none",
        "--name",
        &name,
        "busybox:test",
        "sh",
        "-c",
        "echo out-line; echo err-line >&2; exec sleep 60",
    ]);
    assert!(img
        .fail(&[
            "run",
            "-d",
            "--net",
            "none",
            "--name",
            &name,
            "busybox:test",
            "true"
        ])
        .contains("already in use"));
    let ps = img.ok(&["ps"]);
    assert!(ps.contains(&name) && ps.contains("Up"), "{ps}");
    let o = img
        .cmd(&["exec", &name, "sh", "-c", "echo exec-out; exit 4"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "exec-out");

    // cp both ways, paths resolved inside the rootfs.
    let host = s.path("host.txt");
    std::fs::write(&host, "from-host\n").unwrap();
    img.ok(&["cp", host.to_str().unwrap(), &format!("{name}:/tmp/")]);
    let o = img
        .cmd(&["exec", &name, "cat", "/tmp/host.txt"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-host\n");
    let back = s.path("back");
    std::fs::create_dir_all(&back).unwrap();
    img.ok(&["cp", &format!("{name}:/etc"), back.to_str().unwrap()]);
    assert!(back.join("etc/passwd").exists());
    img.ok(&[
        "cp",
        &format!("{name}:/../../../../etc/passwd"),
        back.join("p").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(back.join("p")).unwrap(),
        std::fs::read_to_string(back.join("etc/passwd")).unwrap()
    );

    // The supervisor copies output into the log as it comes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let o = loop {
        let o = img.cmd(&["logs", &name]).output().unwrap();
        if (o.stdout.ends_with(b"\n") && o.stderr.ends_with(b"\n"))
            || std::time::Instant::now() > deadline
        {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out-line\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err-line\n");
    assert!(img.fail(&["rm", &name]).contains("stop it first"));
    img.ok(&["stop", "-t", "1", &name]);
    let ps = img.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    img.ok(&["rm", &name]);
    assert!(!img.ok(&["ps", "-a"]).contains(&name));
    assert!(img.fail(&["logs", &name]).contains("No such container"));

    // logs -f follows a detached container until it exits.
    let follower = format!("f{}", std::process::id());
    img.ok(&[
        "run",
        "-d",
        "--net",
        "none",
        "--name",
        &follower,
        "busybox:test",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.2; done",
    ]);
    let o = img.cmd(&["logs", "-f", &follower]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "tick 1\ntick 2\ntick 3\n",
        "{}",
        text(&o)
    );
    assert!(img.ok(&["ps", "-a"]).contains("Exited (0)"));
    img.ok(&["rm", &follower]);

    // A terminal: `run -t` under script(1), which gives it a pty.
    let cmd = format!(
        "{} --root {} run --rm -t --net none busybox:test sh -c 'tty; echo $TERM'",
        BERTH_IMG,
        img.root.display()
    );
    let o = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(
        screen.contains("/dev/pts/") && screen.contains("xterm"),
        "{screen}"
    );

    // Foreground run: the container's status is ours; --rm cleans up.
    let o = img
        .cmd(&[
            "run",
            "--rm",
            "--net",
            "none",
            "--name",
            "fg",
            "busybox:test",
            "sh",
            "-c",
            "echo fg-out; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "fg-out\n");
    assert!(!img.ok(&["ps", "-a"]).contains("fg"));
    assert!(mounts_below(&img.root).is_empty());
}

/// `load` reads only what the archive holds: a member that is a symlink to
/// a host file is refused even when the config names that file's content.
#[test]
fn load_reads_only_the_archive() {
    let s = Scratch::new("wf-load-links");
    let img = Img::new(&s, "store");
    // A host tar the crafted archive points at, with a config whose diff
    // ID matches it, so only following the link would make a valid image.
    let secret = s.path("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("secret.txt"), "host secret\n").unwrap();
    let host_tar = s.path("host.tar");
    let tar = |dir: &std::path::Path, out: &std::path::Path, what: &[&str]| {
        assert!(Command::new("tar")
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(out)
            .args(what)
            .status()
            .unwrap()
            .success());
    };
    tar(&secret, &host_tar, &["secret.txt"]);
    let diff_id = Command::new("sha256sum").arg(&host_tar).output().unwrap();
    let diff_id = String::from_utf8_lossy(&diff_id.stdout)[..64].to_string();
    let a = s.path("archive");
    std::fs::create_dir_all(&a).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]}
    });
    std::fs::write(a.join("c.json"), config.to_string()).unwrap();
    std::fs::write(
        a.join("manifest.json"),
        r#"[{"Config":"c.json","RepoTags":["loot:1"],"Layers":["l.tar"]}]"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(&host_tar, a.join("l.tar")).unwrap();
    let archive = s.path("crafted.tar");
    tar(&a, &archive, &["manifest.json", "c.json", "l.tar"]);
    let err = img.fail(&["load", "-i", archive.to_str().unwrap()]);
    assert!(err.contains("l.tar"), "{err}");
    assert!(img.fail(&["inspect", "loot:1"]).contains("not known"));
    // A layer that does not match its diff ID leaves no blob behind.
    let blobs = || {
        std::fs::read_dir(img.root.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();
    std::fs::remove_file(a.join("l.tar")).unwrap();
    std::fs::write(a.join("l.tar"), b"not the layer the config names").unwrap();
    tar(&a, &archive, &["manifest.json", "c.json", "l.tar"]);
    let err = img.fail(&["load", "-i", archive.to_str().unwrap()]);
    assert!(err.contains("digest mismatch"), "{err}");
    assert_eq!(blobs(), before);
}
