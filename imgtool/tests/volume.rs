//! Volumes: named ones that outlive their containers and are shared,
//! filling from the image, anonymous ones (image VOLUME) and `rm -v`,
//! prune, `--mount`, binds, and concurrent users of one new volume. The
//! containers run with `--net none`: no network is needed here, and the
//! host's must not change.

mod common;

use common::*;

fn run(img: &Img, args: &[&str]) -> String {
    let mut full = vec!["run", "--rm", "--net", "none"];
    full.extend(args);
    img.ok(&full)
}

#[test]
fn named_volumes_outlive_containers_and_are_shared() {
    let s = Scratch::new("vol-named");
    let img = Img::new(&s, "store");
    import_web(&s, &img, &[]);
    let _cleanup = RemoveContainers {
        img: &img,
        ns: None,
    };

    assert_eq!(
        img.ok(&["volume", "create", "--label", "app=demo", "data"]),
        "data\n"
    );
    // Creating it again is not an error, as with docker.
    assert_eq!(img.ok(&["volume", "create", "data"]), "data\n");
    let v: serde_json::Value =
        serde_json::from_str(&img.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Labels"]["app"], "demo");
    assert_eq!(v[0]["Driver"], "local");
    let mountpoint = std::path::PathBuf::from(v[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(mountpoint, img.root.join("volumes/data/_data"));
    assert!(img
        .ok(&["volume", "ls"])
        .lines()
        .any(|l| l.ends_with(" data")));

    // The tutorial: what one container writes, the next one reads.
    run(
        &img,
        &[
            "-v",
            "data:/data",
            "web:1",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    );
    assert_eq!(
        run(&img, &["-v", "data:/data:ro", "web:1", "cat", "/data/f"]),
        "kept\n"
    );
    let o = img
        .cmd(&[
            "run",
            "--rm",
            "--net",
            "none",
            "-v",
            "data:/data:ro",
            "web:1",
            "touch",
            "/data/g",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).unwrap(),
        "kept\n"
    );

    // Two running containers share it; it cannot go while they exist.
    for name in ["w1", "w2"] {
        img.ok(&[
            "run",
            "-d",
            "--net",
            "none",
            "--name",
            name,
            "-v",
            "data:/shared",
            "web:1",
            "sleep",
            "60",
        ]);
    }
    img.ok(&["exec", "w1", "sh", "-c", "echo from-w1 > /shared/note"]);
    assert_eq!(img.ok(&["exec", "w2", "cat", "/shared/note"]), "from-w1\n");
    let e = img.fail(&["volume", "rm", "data"]);
    assert!(
        e.contains("volume is in use") && e.contains("w1") && e.contains("w2"),
        "{e}"
    );
    let ps: serde_json::Value = serde_json::from_str(&img.ok(&["--json", "ps"])).unwrap();
    let m = &ps[0]["Mounts"][0];
    assert_eq!(
        (
            m["Type"].as_str(),
            m["Name"].as_str(),
            m["Destination"].as_str()
        ),
        (Some("volume"), Some("data"), Some("/shared"))
    );
    img.ok(&["rm", "-f", "-v", "w1", "w2"]);
    // rm -v keeps named volumes.
    assert_eq!(
        run(&img, &["-v", "data:/d", "web:1", "cat", "/d/note"]),
        "from-w1\n"
    );
    img.ok(&["volume", "rm", "data"]);
    assert!(img
        .fail(&["volume", "inspect", "data"])
        .contains("not found"));
    img.ok(&["volume", "rm", "-f", "data"]);
    assert!(img
        .fail(&["volume", "create", "x/y"])
        .contains("invalid volume name"));
    assert!(mounts_below(&img.root).is_empty());
}

#[test]
fn volumes_fill_from_the_image_and_anonymous_ones_go_with_rm_v() {
    let s = Scratch::new("vol-anon");
    let img = Img::new(&s, "store");
    import_web(&s, &img, &["VOLUME /srv/data"]);
    let _cleanup = RemoveContainers {
        img: &img,
        ns: None,
    };

    // A new named volume gets the image's content, owner and mode.
    let o = run(
        &img,
        &[
            "-v",
            "seeded:/srv/data",
            "web:1",
            "sh",
            "-c",
            "cat /srv/data/seed; stat -c '%u:%g %a' /srv/data",
        ],
    );
    assert_eq!(o, "seeded\n33:33 750\n");
    // Once it holds something, it is not filled again.
    run(
        &img,
        &[
            "-v",
            "seeded:/srv/data",
            "web:1",
            "sh",
            "-c",
            "rm /srv/data/seed; echo mine > /srv/data/own",
        ],
    );
    assert_eq!(
        run(
            &img,
            &["-v", "seeded:/srv/data", "web:1", "ls", "/srv/data"]
        ),
        "own\n"
    );
    // nocopy: empty.
    assert_eq!(
        run(
            &img,
            &["-v", "bare:/srv/data:nocopy", "web:1", "ls", "/srv/data"]
        ),
        ""
    );

    // The image's VOLUME: an anonymous volume, filled, gone with rm -v.
    let named = || -> Vec<String> {
        img.ok(&["volume", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    img.ok(&[
        "run", "-d", "--net", "none", "--name", "anon", "web:1", "sleep", "60",
    ]);
    let anonymous: Vec<String> = named().into_iter().filter(|n| n.len() == 64).collect();
    assert_eq!(anonymous.len(), 1, "{:?}", named());
    assert_eq!(
        img.ok(&["exec", "anon", "cat", "/srv/data/seed"]),
        "seeded\n"
    );
    img.ok(&["rm", "-f", "-v", "anon"]);
    assert!(!named().contains(&anonymous[0]));
    // Without -v it stays until a prune; prune keeps named volumes unless -a.
    img.ok(&[
        "run", "-d", "--net", "none", "--name", "anon2", "web:1", "sleep", "60",
    ]);
    img.ok(&["rm", "-f", "anon2"]);
    assert_eq!(named().iter().filter(|n| n.len() == 64).count(), 1);
    let o = img.ok(&["volume", "prune", "-f"]);
    assert!(
        o.starts_with("Deleted Volumes:\n") && o.contains("Total reclaimed space"),
        "{o}"
    );
    assert_eq!(named(), ["bare", "seeded"]);
    // In use: kept even by prune -a.
    img.ok(&[
        "run",
        "-d",
        "--net",
        "none",
        "--name",
        "user",
        "-v",
        "seeded:/srv/data",
        "web:1",
        "sleep",
        "60",
    ]);
    let o = img.ok(&["volume", "prune", "-a"]);
    assert!(o.contains("bare") && !o.contains("seeded"), "{o}");
    assert_eq!(
        named().iter().filter(|n| n.len() != 64).collect::<Vec<_>>(),
        ["seeded"]
    );
    // --rm takes the anonymous volume with it, as docker's does.
    img.ok(&["rm", "-f", "-v", "user"]);
    run(&img, &["web:1", "true"]);
    assert_eq!(named(), ["seeded"]);
    assert!(mounts_below(&img.root).is_empty());
}

#[test]
fn mount_flags_binds_and_errors() {
    let s = Scratch::new("vol-mount");
    let img = Img::new(&s, "store");
    import_web(&s, &img, &[]);
    let _cleanup = RemoveContainers {
        img: &img,
        ns: None,
    };
    let host = s.path("host-dir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let h = host.to_str().unwrap();

    // --mount of each type.
    let o = run(
        &img,
        &[
            "--mount",
            &format!("type=bind,src={h},dst=/b,readonly"),
            "--mount",
            "type=volume,source=mv,target=/v",
            "--mount",
            "type=tmpfs,destination=/t,tmpfs-size=1m",
            "web:1",
            "sh",
            "-c",
            "cat /b/in; touch /b/x 2>/dev/null || echo ro; echo v > /v/f; grep ' /t ' /proc/mounts",
        ],
    );
    assert!(o.starts_with("from host\nro\ntmpfs /t tmpfs "), "{o}");
    assert!(o.contains("size=1024k"), "{o}");
    assert_eq!(
        std::fs::read_to_string(img.root.join("volumes/mv/_data/f")).unwrap(),
        "v\n"
    );
    // -v binds a host path, making it if missing (docker does; --mount
    // does not).
    let made = s.path("made/by/run");
    run(
        &img,
        &[
            "-v",
            &format!("{}:/m", made.display()),
            "web:1",
            "sh",
            "-c",
            "echo w > /m/w",
        ],
    );
    assert_eq!(std::fs::read_to_string(made.join("w")).unwrap(), "w\n");
    let e = img.fail(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--mount",
        &format!("type=bind,src={}/nope,dst=/x", h),
        "web:1",
        "true",
    ]);
    assert!(e.contains("bind source path does not exist"), "{e}");

    // Errors name the flag and the value.
    for (args, want) in [
        (
            vec!["-v", "data:relative"],
            "invalid --volume: \"data:relative\"",
        ),
        (vec!["-v", "data:/x:bogus"], "unknown option \"bogus\""),
        (
            vec!["--mount", "type=nfs,dst=/x"],
            "invalid --mount: \"type=nfs,dst=/x\"",
        ),
        (
            vec!["--mount", "type=volume,src=a,dst=/x,size=3"],
            "unknown key \"size\"",
        ),
        (
            vec!["-v", "a1:/x", "-v", "a2:/x"],
            "duplicate mount point /x",
        ),
    ] {
        let mut full = vec!["run", "--rm", "--net", "none"];
        full.extend(args);
        full.extend(["web:1", "true"]);
        let e = img.fail(&full);
        assert!(e.contains(want) && e.lines().count() == 1, "{full:?}: {e}");
    }
    // Nothing half-made stays: no container, no anonymous volume.
    assert!(img.container_names().is_empty());
    // `bundle` binds host paths but refuses volumes (nothing would track
    // them).
    let b = s.path("b");
    let e = img.fail(&["bundle", "web:1", b.to_str().unwrap(), "-v", "data:/d"]);
    assert!(e.contains("volumes are for `run`"), "{e}");
    assert!(img
        .fail(&["bundle", "web:1", b.to_str().unwrap(), "--net", "bridge"])
        .contains("a bundle takes host or none"));
    assert!(mounts_below(&img.root).is_empty());
}

#[test]
fn concurrent_runs_share_one_new_volume() {
    let s = Scratch::new("vol-race");
    let img = Img::new(&s, "store");
    import_web(&s, &img, &[]);
    let _cleanup = RemoveContainers {
        img: &img,
        ns: None,
    };
    // Six containers at once mount a volume none of them finds: one volume
    // is made, filled once, and every write lands in it.
    let children: Vec<_> = (0..6)
        .map(|i| {
            img.cmd(&[
                "run",
                "--rm",
                "--net",
                "none",
                "-v",
                "race:/srv/data",
                "web:1",
                "sh",
                "-c",
                &format!("test -f /srv/data/seed && echo {i} >> /srv/data/log"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(img.ok(&["volume", "ls", "-q"]), "race\n");
    let log = std::fs::read_to_string(img.root.join("volumes/race/_data/log")).unwrap();
    let mut got: Vec<&str> = log.lines().collect();
    got.sort();
    assert_eq!(got, ["0", "1", "2", "3", "4", "5"]);
    assert!(img.container_names().is_empty());
    assert!(mounts_below(&img.root).is_empty());
}
