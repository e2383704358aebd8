//! `bundle` makes what `docker run` would run: checked by running the
//! bundles with `berth`.

mod common;

use std::path::Path;
use std::process::Command;

use berth_img::image::{ImageConfig, RootFs, RunConfig};
use berth_img::store::{Access, Store};
use common::*;

/// A busybox rootfs with a `web` user and group, as a tar.
fn web_rootfs_tar(s: &Scratch) -> std::path::PathBuf {
    let dir = s.path("webroot");
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(busybox_tar(s))
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nweb:x:1000:\nstaff:x:50:web\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("srv")).unwrap();
    let tar = s.path("web.tar");
    assert!(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap()
        .success());
    tar
}

fn config_of(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

#[test]
fn runs_the_image_as_docker_run_would() {
    let s = Scratch::new("dockerrun");
    let img = Img::new(&s, "store");
    let tar = web_rootfs_tar(&s);
    img.ok(&[
        "import",
        tar.to_str().unwrap(),
        "web:1",
        "-c",
        "ENV FOO=image",
        "-c",
        "WORKDIR /srv",
        "-c",
        "USER web",
        "-c",
        r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
        "-c",
        r#"CMD ["id; echo $FOO $HOME; pwd"]"#,
        "-c",
        "EXPOSE 8080",
        "-c",
        "LABEL org.example.team=infra",
        "-c",
        "STOPSIGNAL SIGQUIT",
    ]);
    let b = s.path("b1");
    img.ok(&["bundle", "web:1", b.to_str().unwrap()]);
    let out = run_ok(&s, &b, "dockerrun1");
    assert!(
        out.contains("uid=1000(web) gid=1000(web) groups=50(staff)"),
        "{out}"
    );
    assert!(
        out.contains("image /home/web") && out.contains("/srv"),
        "{out}"
    );
    let c = config_of(&b);
    let ann = &c["annotations"];
    assert_eq!(ann["org.opencontainers.image.exposedPorts"], "8080/tcp");
    assert_eq!(ann["org.opencontainers.image.stopSignal"], "SIGQUIT");
    assert_eq!(ann["org.example.team"], "infra");
    assert!(c["linux"]["seccomp"]["syscalls"].as_array().unwrap().len() > 2);
    assert!(c["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/proc/kcore"));
    img.ok(&["rm-bundle", b.to_str().unwrap()]);

    // Arguments replace Cmd (the entrypoint stays); flags override the image.
    let b2 = s.path("b2");
    img.ok(&[
        "bundle",
        "web:1",
        b2.to_str().unwrap(),
        "-e",
        "FOO=cli",
        "-u",
        "root",
        "-w",
        "/made/by/runtime",
        "--hostname",
        "box1",
        "--",
        "echo $FOO $(hostname) $(id -u) $(pwd); grep Seccomp: /proc/self/status",
    ]);
    let out = run_ok(&s, &b2, "dockerrun2");
    assert!(out.contains("cli box1 0 /made/by/runtime"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    img.ok(&["rm-bundle", b2.to_str().unwrap()]);

    // --entrypoint "" clears it: the arguments are the command.
    let b3 = s.path("b3");
    img.ok(&[
        "bundle",
        "web:1",
        b3.to_str().unwrap(),
        "--entrypoint",
        "",
        "--",
        "echo",
        "plain",
    ]);
    assert_eq!(run_ok(&s, &b3, "dockerrun3").trim(), "plain");
    img.ok(&["rm-bundle", b3.to_str().unwrap()]);
}

#[test]
fn mounts_limits_network_and_capabilities() {
    let s = Scratch::new("options");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    let host = s.path("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from-host").unwrap();
    let b = s.path("b");
    let vol = format!("{}:/data:ro", host.display());
    img.ok(&[
        "bundle", "busybox:local", b.to_str().unwrap(), "-v", &vol, "--tmpfs", "/scratch", "--read-only",
        "--cap-drop", "CHOWN", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "--",
        "sh", "-c",
        "cat /data/in; echo; touch /data/x 2>/dev/null || echo ro-volume; touch /rootfile 2>/dev/null || echo ro-root; \
         grep -q ' /scratch tmpfs' /proc/mounts && echo tmpfs-ok; touch /scratch/f && chown 1:1 /scratch/f 2>/dev/null || echo no-chown; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null; \
         grep -c : /proc/net/dev",
    ]);
    let out = run_ok(&s, &b, "options");
    for want in [
        "from-host",
        "ro-volume",
        "ro-root",
        "tmpfs-ok",
        "no-chown",
        "67108864",
        "50",
        "50000",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == want),
            "missing {want}:\n{out}"
        );
    }
    // --net none: loopback only.
    assert_eq!(out.lines().last().unwrap().trim(), "1", "{out}");
    img.ok(&["rm-bundle", b.to_str().unwrap()]);

    let bh = s.path("bh");
    img.ok(&[
        "bundle",
        "busybox:local",
        bh.to_str().unwrap(),
        "--net",
        "host",
        "--",
        "grep",
        "-c",
        ":",
        "/proc/net/dev",
    ]);
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .matches(':')
        .count();
    assert_eq!(run_ok(&s, &bh, "hostnet").trim(), host_ifaces.to_string());
    let c = config_of(&bh);
    assert!(!c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "network"));
    img.ok(&["rm-bundle", bh.to_str().unwrap()]);

    let bt = s.path("bt");
    img.ok(&[
        "bundle",
        "busybox:local",
        bt.to_str().unwrap(),
        "-t",
        "--cap-add",
        "sys_admin",
    ]);
    let c = config_of(&bt);
    assert_eq!(c["process"]["terminal"], true);
    assert!(c["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "TERM=xterm"));
    assert!(c["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "CAP_SYS_ADMIN"));
    img.ok(&["rm-bundle", bt.to_str().unwrap()]);
    assert!(mounts_below(&s.0).is_empty());
}

/// A gzip layer from (path, content) files; a `None` content is a whiteout.
fn layer(
    store: &Store,
    files: &[(&str, Option<&str>)],
) -> (berth_img::image::Descriptor, berth_img::digest::Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let (name, data) = match content {
            Some(c) => (path.to_string(), c.as_bytes()),
            None => {
                let p = Path::new(path);
                let wh = format!(".wh.{}", p.file_name().unwrap().to_str().unwrap());
                (p.with_file_name(wh).to_str().unwrap().to_string(), &b""[..])
            }
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    berth_img::import::store_layer(store, &b.into_inner().unwrap()[..]).unwrap()
}

/// Adds layers on top of busybox:local as image `name`.
fn stack(
    img: &Img,
    name: &str,
    layers: Vec<(berth_img::image::Descriptor, berth_img::digest::Digest)>,
) {
    let store = Store::open(&img.root, Access::Shared).unwrap();
    let base = store
        .image("docker.io/library/busybox:local")
        .unwrap()
        .unwrap();
    let (mut manifest, mut config): (_, ImageConfig) = store.load(&base).unwrap();
    for (desc, diff_id) in layers {
        manifest.layers.push(desc);
        config.rootfs.diff_ids.push(diff_id);
    }
    config.config = RunConfig {
        cmd: Some(vec!["sh".into()]),
        ..Default::default()
    };
    config.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: config.rootfs.diff_ids,
    };
    berth_img::import::store_image(&store, name, &config, manifest.layers).unwrap();
}

/// The same stack as the kernel's overlayfs, through fuse-overlayfs (what
/// podman's `overlay.mount_program` picks, and rootless berth-img's
/// fallback): whiteouts and opaque directories of the layers below are
/// honoured, and what the container changes commits as a layer with
/// whiteouts, never fuse-overlayfs' own marker files.
#[test]
fn fuse_overlayfs_stacks_layers_as_the_kernel_does() {
    fn with<'a>(fuse: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
        [fuse, args].concat()
    }
    let s = Scratch::new("fusestack");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\n\
         RUN mkdir /o && echo a > /o/a && echo x > /gone\n\
         RUN rm -rf /o /gone && mkdir /o && echo b > /o/b\n",
    )
    .unwrap();
    let fuse = [
        "--storage-opt",
        "overlay.mount_program=/usr/bin/fuse-overlayfs",
    ];
    img.ok(&with(
        &fuse,
        &["build", "-t", "fz:1", ctx.to_str().unwrap()],
    ));
    let b = s.path("b");
    img.ok(&with(&fuse, &["bundle", "fz:1", b.to_str().unwrap()]));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join(".berth-img.json")).unwrap()).unwrap();
    assert_eq!(meta["rootfs"], "fuse-overlayfs");
    let mounts = mounts_below(&b);
    assert_eq!(mounts.len(), 1);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mounts[0].as_str()))
        .unwrap();
    assert!(line.contains(" - fuse.fuse-overlayfs "), "{line}");
    let mut config = config_of(&b);
    config["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "ls /o; test -e /gone || echo gone; rm /etc/group; rm -rf /o; mkdir /o; echo z > /o/z"
    ]);
    std::fs::write(b.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    assert_eq!(run_ok(&s, &b, "fusestack"), "b\ngone\n");
    img.ok(&["commit", b.to_str().unwrap(), "fz:2"]);
    img.ok(&["rm-bundle", b.to_str().unwrap()]);
    assert_eq!(mounts_below(&b).len(), 0);

    // inspect says how a container's rootfs is stacked, as podman's does.
    img.ok(&with(
        &fuse,
        &["create", "--net", "none", "--name", "fzc", "fz:1", "true"],
    ));
    let v: serde_json::Value = serde_json::from_str(&img.ok(&["inspect", "fzc"])).unwrap();
    let driver = &v[0]["GraphDriver"];
    assert_eq!(driver["Name"], "overlay", "{driver}");
    assert_eq!(driver["Data"]["MountProgram"], "fuse-overlayfs", "{driver}");
    img.ok(&["rm", "fzc"]);
    assert_eq!(mounts_below(&img.root).len(), 0);

    // The committed layer hides /etc/group and replaces /o, in tar form.
    let tar = s.path("fz2.tar");
    img.ok(&["save", "-o", tar.to_str().unwrap(), "fz:2"]);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {0} && mkdir -p x && tar -xf {1} -C x && \
             for f in x/blobs/sha256/*; do tar -tzf $f 2>/dev/null | tr '\\n' ' '; echo; done",
            s.0.display(),
            tar.display()
        ))
        .output()
        .unwrap();
    let layers = String::from_utf8_lossy(&out.stdout);
    let committed: Vec<&str> = layers
        .lines()
        .find(|l| l.split(' ').any(|e| e == "o/z"))
        .unwrap_or_else(|| panic!("no layer with o/z:\n{layers}"))
        .split_whitespace()
        .collect();
    for want in ["etc/.wh.group", "o/.wh..wh..opq", "o/z"] {
        assert_eq!(
            committed.iter().filter(|e| **e == want).count(),
            1,
            "{want} once in the committed layer: {committed:?}"
        );
    }
    assert!(!committed.contains(&"o/.wh..opq"), "{committed:?}");
    let b2 = s.path("b2");
    img.ok(&[
        "bundle",
        "fz:2",
        b2.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "ls /o; test -e /etc/group || echo gone",
    ]);
    assert_eq!(run_ok(&s, &b2, "fusestack2"), "z\ngone\n");
    img.ok(&["rm-bundle", b2.to_str().unwrap()]);
}

#[test]
fn layers_stack_with_whiteouts_in_overlay_and_copy_modes() {
    let s = Scratch::new("stack");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    {
        let store = Store::open(&img.root, Access::Shared).unwrap();
        let l1 = layer(&store, &[("etc/motd", Some("one")), ("opt/a", Some("a"))]);
        let l2 = layer(
            &store,
            &[
                ("etc/motd", Some("two")),
                ("opt/a", None),
                ("bin/.wh.vi", Some("")),
            ],
        );
        drop(store);
        stack(&img, "docker.io/library/stacked:1", vec![l1, l2]);
    }
    let script = "cat /etc/motd; echo; ls /opt/a 2>/dev/null || echo a-gone; ls /bin/vi 2>/dev/null || echo vi-gone";
    for (i, mode) in [&[][..], &["--copy"][..]].iter().enumerate() {
        let b = s.path(&format!("b{i}"));
        let mut args = vec!["bundle", "stacked:1", b.to_str().unwrap()];
        args.extend_from_slice(mode);
        args.extend(["--", "sh", "-c", script]);
        img.ok(&args);
        let out = run_ok(&s, &b, &format!("stack{i}"));
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["two", "a-gone", "vi-gone"],
            "{mode:?}: {out}"
        );
        assert_eq!(
            mounts_below(&b).len(),
            usize::from(mode.is_empty()),
            "{mode:?}"
        );
        img.ok(&["rm-bundle", b.to_str().unwrap()]);
    }
}

#[test]
fn images_with_hundreds_of_layers_mount() {
    let s = Scratch::new("manylayers");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    {
        let store = Store::open(&img.root, Access::Shared).unwrap();
        let names: Vec<String> = (0..150).map(|i| format!("layers/f{i:03}")).collect();
        let layers = names
            .iter()
            .map(|n| layer(&store, &[(n.as_str(), Some("x"))]))
            .collect();
        drop(store);
        stack(&img, "docker.io/library/many:1", layers);
    }
    // 151 lower directories: far more than mount(2)'s one-page option
    // string could name.
    let b = s.path("b");
    img.ok(&[
        "bundle",
        "many:1",
        b.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "ls /layers | wc -l",
    ]);
    assert_eq!(run_ok(&s, &b, "many").trim(), "150");
    img.ok(&["rm-bundle", b.to_str().unwrap()]);
}
