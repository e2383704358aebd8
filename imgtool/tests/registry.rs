//! Pull, push, auth and store behaviour against Debian's real registry on
//! 127.0.0.1, with images run through `berth`.

mod common;

use std::process::Stdio;

use common::*;

fn layer_digest(img: &Img, reference: &str) -> String {
    inspect(img, reference)["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn push_pull_bundle_run_through_redirects() {
    let s = Scratch::new("roundtrip");
    let reg = Registry::start(&s, "none", &["--with-redirect-proxy"]);
    let src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:local");
    let target = format!("{}/lib/busybox:1.0", reg.host);
    src.ok(&["tag", "busybox:local", &target]);
    let out = src.ok(&["push", &target]);
    assert!(out.contains("2 uploaded"), "{out}");
    // Pushing again uploads nothing.
    assert!(src.ok(&["push", &target]).contains("2 already present"));

    // Pull through the proxy that sends blobs to "storage" elsewhere.
    let proxy = reg.proxy.clone().unwrap();
    let dst = Img::new(&s, "dst");
    let pulled = format!("{proxy}/lib/busybox:1.0");
    let out = dst.ok(&["pull", &pulled]);
    assert!(out.contains("Digest: sha256:"), "{out}");
    let log = reg.log("proxy-requests.log");
    assert!(
        log.contains("\"kind\": \"blobstore\""),
        "blobs were not redirected:\n{log}"
    );
    assert!(
        !log.contains("\"authorization\": true"),
        "credentials leaked to blob storage:\n{log}"
    );
    assert_eq!(
        inspect(&dst, &pulled)["digest"],
        inspect(&src, &target)["digest"]
    );

    let bundle = s.path("bundle");
    dst.ok(&[
        "bundle",
        &pulled,
        bundle.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo pulled-and-running; ls /bin/busybox",
    ]);
    let out = run_ok(&s, &bundle, "roundtrip");
    assert!(out.contains("pulled-and-running"), "{out}");

    // A second bundle of the same image shares the unpacked layers: its
    // rootfs is an overlay whose lower is the store's layer directory.
    let b2 = s.path("bundle2");
    dst.ok(&["bundle", &pulled, b2.to_str().unwrap()]);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(&format!("{}/rootfs", b2.display())))
        .unwrap();
    assert!(
        line.contains("overlay") && line.contains(&dst.root.join("layers").display().to_string()),
        "{line}"
    );

    dst.ok(&["rm-bundle", bundle.to_str().unwrap()]);
    dst.ok(&["rm-bundle", b2.to_str().unwrap()]);
    assert!(!bundle.exists() && !b2.exists());
    assert!(mounts_below(&s.0).is_empty(), "{:?}", mounts_below(&s.0));
}

#[test]
fn chunked_upload_cross_repo_mount_and_concurrent_pulls() {
    let s = Scratch::new("chunked");
    let reg = Registry::start(&s, "none", &[]);
    let mut src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:local");
    src.env
        .push(("BERTH_IMG_CHUNK_SIZE".into(), "65536".into()));
    let a = format!("{}/a/busybox:v1", reg.host);
    let b = format!("{}/b/busybox:v1", reg.host);
    src.ok(&["tag", "busybox:local", &a]);
    src.ok(&["tag", "busybox:local", &b]);
    assert!(src.ok(&["push", &a]).contains("2 uploaded"));
    // The registry already has the blobs in repository a: b links them.
    let out = src.ok(&["push", &b]);
    assert!(out.contains("2 mounted"), "{out}");
    let access = reg.log("registry-access.log");
    assert!(
        access.contains("PATCH /v2/a/busybox/blobs/uploads/"),
        "no chunked upload:\n{access}"
    );
    assert!(access.contains("mount=sha256"), "{access}");

    // Two pulls of one image into one store at once: both succeed, one copy.
    let dst = Img::new(&s, "dst");
    let children: Vec<_> = (0..2)
        .map(|_| {
            dst.cmd(&["pull", &b])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let layers: Vec<_> = std::fs::read_dir(dst.root.join("layers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_eq!(
        std::fs::read_dir(dst.root.join("ingest")).unwrap().count(),
        0
    );
    let bundle = s.path("bundle");
    dst.ok(&["bundle", &b, bundle.to_str().unwrap(), "--", "echo", "ok"]);
    assert_eq!(run_ok(&s, &bundle, "chunked").trim(), "ok");
    dst.ok(&["rm-bundle", bundle.to_str().unwrap()]);
}

#[test]
fn corrupt_blob_is_a_digest_mismatch_and_leaves_nothing() {
    let s = Scratch::new("mismatch");
    let reg = Registry::start(&s, "none", &[]);
    let src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:local");
    let r = format!("{}/x/bb:1", reg.host);
    src.ok(&["tag", "busybox:local", &r]);
    src.ok(&["push", &r]);
    let layer = layer_digest(&src, &r);
    // Same size, different bytes: only the digest can tell.
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let dst = Img::new(&s, "dst");
    let err = dst.fail(&["pull", &r]);
    assert!(
        err.contains("digest mismatch") && err.contains(&layer),
        "{err}"
    );
    assert!(err.contains("got sha256:"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(dst.fail(&["inspect", &r]).contains("not known"));
    let layer_hex = layer.strip_prefix("sha256:").unwrap();
    assert!(!dst.root.join("blobs/sha256").join(layer_hex).exists());
    assert_eq!(
        std::fs::read_dir(dst.root.join("layers")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dst.root.join("ingest")).unwrap().count(),
        0
    );
}

#[test]
fn interrupted_pull_resumes_from_verified_bytes() {
    let s = Scratch::new("resume");
    let reg = Registry::start(&s, "none", &[]);
    let src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:local");
    let r = format!("{}/x/bb:1", reg.host);
    src.ok(&["tag", "busybox:local", &r]);
    src.ok(&["push", &r]);
    let layer = layer_digest(&src, &r);
    let hex = layer.strip_prefix("sha256:").unwrap();
    let blob = std::fs::read(src.root.join("blobs/sha256").join(hex)).unwrap();

    // What an interrupted pull leaves: the first part of the blob in ingest/.
    let dst = Img::new(&s, "dst");
    std::fs::create_dir_all(dst.root.join("ingest")).unwrap();
    std::fs::write(
        dst.root.join("ingest").join(format!("sha256-{hex}")),
        &blob[..blob.len() / 2],
    )
    .unwrap();
    let o = dst.run(&["--log-level", "debug", "pull", &r]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("resuming {layer} at byte {}", blob.len() / 2)),
        "{err}"
    );
    let bundle = s.path("bundle");
    dst.ok(&["bundle", &r, bundle.to_str().unwrap(), "--", "true"]);
    run_ok(&s, &bundle, "resume");
    dst.ok(&["rm-bundle", bundle.to_str().unwrap()]);

    // Garbage in ingest/ is caught by the digest, dropped, and the next
    // pull starts clean.
    let dst2 = Img::new(&s, "dst2");
    std::fs::create_dir_all(dst2.root.join("ingest")).unwrap();
    std::fs::write(
        dst2.root.join("ingest").join(format!("sha256-{hex}")),
        vec![7u8; 100],
    )
    .unwrap();
    assert!(dst2.fail(&["pull", &r]).contains("digest mismatch"));
    dst2.ok(&["pull", &r]);
}

#[test]
fn htpasswd_basic_auth() {
    let s = Scratch::new("basic");
    let reg = Registry::start(&s, "htpasswd", &["--user", "alice", "--password", "s3cret"]);
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    let r = format!("{}/team/bb:1", reg.host);
    img.ok(&["tag", "busybox:local", &r]);
    let err = img.fail(&["push", &r]);
    assert!(err.contains("unauthorized"), "{err}");
    let err = img.fail(&["login", &reg.host, "-u", "alice", "-p", "wrong"]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!img.auth.exists());
    let mut login = img.cmd(&["login", &reg.host, "-u", "alice", "--password-stdin"]);
    login.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = login.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"s3cret\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Login Succeeded"),
        "{}",
        text(&o)
    );
    let auth = std::fs::read_to_string(&img.auth).unwrap();
    assert!(
        auth.contains(&reg.host) && auth.contains("\"auth\""),
        "{auth}"
    );

    img.ok(&["push", &r]);
    let other = Img {
        root: s.path("other"),
        auth: img.auth.clone(),
        env: vec![],
    };
    other.ok(&["pull", &r]);
    img.ok(&["logout", &reg.host]);
    let fresh = Img {
        root: s.path("fresh"),
        auth: img.auth.clone(),
        env: vec![],
    };
    assert!(fresh.fail(&["pull", &r]).contains("unauthorized"));
}

#[test]
fn token_auth_with_anonymous_pull() {
    let s = Scratch::new("token");
    let reg = Registry::start(
        &s,
        "token",
        &["--user", "bob", "--password", "pw", "--anonymous-pull"],
    );
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    let r = format!("{}/team/bb:1", reg.host);
    img.ok(&["tag", "busybox:local", &r]);
    // Anonymous tokens only grant pull.
    let err = img.fail(&["push", &r]);
    assert!(
        err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );
    img.fail(&["login", &reg.host, "-u", "bob", "-p", "nope"]);
    img.ok(&["login", &reg.host, "-u", "bob", "-p", "pw"]);
    img.ok(&["push", &r]);
    let tokens = reg.log("token-requests.log");
    assert!(tokens.contains("push"), "{tokens}");
    // Anyone may pull.
    let anon = Img {
        root: s.path("anon"),
        auth: s.path("no-auth.json"),
        env: vec![],
    };
    anon.ok(&["pull", &r]);
    let bundle = s.path("bundle");
    anon.ok(&[
        "bundle",
        &r,
        bundle.to_str().unwrap(),
        "--",
        "echo",
        "token-ok",
    ]);
    assert_eq!(run_ok(&s, &bundle, "token").trim(), "token-ok");
    anon.ok(&["rm-bundle", bundle.to_str().unwrap()]);
}

#[test]
fn index_resolves_by_platform() {
    let s = Scratch::new("index");
    let reg = Registry::start(&s, "none", &[]);
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    let r = format!("{}/multi/bb:single", reg.host);
    img.ok(&["tag", "busybox:local", &r]);
    img.ok(&["push", &r]);
    let m = inspect(&img, &r);
    let digest = m["digest"].as_str().unwrap();
    let size = serde_json::to_vec(&m["manifest"]).unwrap().len();
    let size = std::fs::metadata(img.root.join("blobs/sha256").join(&digest[7..]))
        .map(|m| m.len())
        .unwrap_or(size as u64);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
             "platform": {"os": "linux", "architecture": "amd64"}}
        ]
    });
    let st = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
        ])
        .arg(index.to_string())
        .arg(format!("http://{}/v2/multi/bb/manifests/multi", reg.host))
        .status()
        .unwrap();
    assert!(st.success());
    let multi = format!("{}/multi/bb:multi", reg.host);
    let dst = Img::new(&s, "dst");
    dst.ok(&["pull", "--platform", "linux/arm64", &multi]);
    assert_eq!(inspect(&dst, &multi)["digest"].as_str().unwrap(), digest);
    let err = dst.fail(&["pull", "--platform", "linux/s390x", &multi]);
    assert!(
        err.contains("no image for platform linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    assert!(dst
        .fail(&["pull", "--platform", "linux", &multi])
        .contains("--platform"));
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let s = Scratch::new("badinput");
    let reg = Registry::start(&s, "none", &[]);
    let img = Img::new(&s, "store");
    for (args, want) in [
        (vec!["pull", "UPPER/case"], "invalid reference format"),
        (
            vec!["pull", "busybox@sha256:123"],
            "invalid reference format",
        ),
        (vec!["push", "nothere:1"], "not known"),
        (vec!["inspect", "nothere"], "not known"),
        (vec!["rmi", "nothere"], "No such image"),
        (vec!["tag", "nothere", "x"], "not known"),
        (vec!["login", "127.0.0.1:1", "-u", "u"], "password required"),
        (vec!["rm-bundle", "/tmp"], "not a bundle made by berth-img"),
    ] {
        let err = img.fail(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let missing = format!("{}/no/such:tag", reg.host);
    let err = img.fail(&["pull", &missing]);
    assert!(
        err.contains("not found") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );

    img.import_busybox(&s, "busybox:local");
    let images_before = std::fs::read(img.root.join("images.json")).unwrap();
    let bundle = s.path("bundle");
    for (flags, want) in [
        (vec!["-v", "relative:/x"], "volumes are for `run`"),
        (
            vec!["-v", "/nonexistent-src:/x"],
            "bind source path does not exist",
        ),
        (vec!["--memory", "lots"], "--memory"),
        (vec!["--cap-add", "CAP_FLY"], "unknown capability"),
        (vec!["-u", "nosuchuser"], "unable to find user nosuchuser"),
        (vec!["--net", "bridge"], "--net"),
        (vec!["-e", "=x"], "KEY=VALUE"),
    ] {
        let mut args = vec!["bundle", "busybox:local", bundle.to_str().unwrap()];
        args.extend(flags.iter().copied());
        let err = img.fail(&args);
        assert!(err.contains(want), "{flags:?}: {err}");
        assert!(!bundle.exists(), "{flags:?} left {}", bundle.display());
    }
    std::fs::create_dir_all(bundle.join("keep")).unwrap();
    assert!(img
        .fail(&["bundle", "busybox:local", bundle.to_str().unwrap()])
        .contains("not empty"));
    assert!(bundle.join("keep").exists());
    assert_eq!(
        std::fs::read(img.root.join("images.json")).unwrap(),
        images_before
    );
    assert!(mounts_below(&s.0).is_empty());
}

#[test]
fn rmi_and_prune_free_what_nothing_needs() {
    let s = Scratch::new("prune");
    let img = Img::new(&s, "store");
    img.import_busybox(&s, "busybox:local");
    img.ok(&["tag", "busybox:local", "busybox:other"]);
    let bundle = s.path("bundle");
    img.ok(&[
        "bundle",
        "busybox:local",
        bundle.to_str().unwrap(),
        "--",
        "true",
    ]);
    img.ok(&["rmi", "busybox:local"]);
    // Still tagged once: nothing deleted.
    assert_eq!(
        std::fs::read_dir(img.root.join("layers")).unwrap().count(),
        1
    );
    img.ok(&["rmi", "busybox:other"]);
    // The bundle still stacks the layer: it must survive.
    assert_eq!(
        std::fs::read_dir(img.root.join("layers")).unwrap().count(),
        1
    );
    run_ok(&s, &bundle, "prune");
    img.ok(&["rm-bundle", bundle.to_str().unwrap()]);
    let out = img.ok(&["prune"]);
    assert!(out.contains("1 layers"), "{out}");
    assert_eq!(
        std::fs::read_dir(img.root.join("layers")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(img.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(img.ok(&["images", "--json"]).trim() == "[]");
}

#[test]
fn zstd_and_uncompressed_layers_round_trip() {
    let s = Scratch::new("compression");
    let reg = Registry::start(&s, "none", &[]);
    let src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:test");
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nRUN echo layered > /layered\n",
    )
    .unwrap();
    for (compression, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let r = format!("{}/comp/{compression}:1", reg.host);
        src.ok(&[
            "build",
            "--compression",
            compression,
            "-t",
            &r,
            ctx.to_str().unwrap(),
        ]);
        src.ok(&["push", &r]);
        let dst = Img::new(&s, &format!("dst-{compression}"));
        dst.ok(&["pull", &r]);
        let layers = inspect(&dst, &r)["manifest"]["layers"].clone();
        assert_eq!(layers[1]["mediaType"], media_type, "{layers}");
        let b = s.path(&format!("b-{compression}"));
        dst.ok(&["bundle", &r, b.to_str().unwrap(), "--", "cat", "/layered"]);
        assert_eq!(
            run_ok(&s, &b, &format!("comp-{compression}")).trim(),
            "layered"
        );
        dst.ok(&["rm-bundle", b.to_str().unwrap()]);
    }
}

#[test]
fn transient_errors_are_retried() {
    let s = Scratch::new("retries");
    let reg = Registry::start(&s, "none", &["--with-redirect-proxy", "--proxy-flaky", "3"]);
    let src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:test");
    let r = format!("{}/flaky/bb:1", reg.host);
    src.ok(&["tag", "busybox:test", &r]);
    src.ok(&["push", &r]);
    // Every blob answers 503, 429, 503 before it is served.
    let dst = Img::new(&s, "dst");
    let pulled = format!("{}/flaky/bb:1", reg.proxy.clone().unwrap());
    dst.ok(&["pull", &pulled]);
    let log = reg.log("proxy-requests.log");
    assert!(
        log.contains("\"status\": 503") && log.contains("\"status\": 429"),
        "{log}"
    );
    assert_eq!(
        inspect(&dst, &pulled)["digest"],
        inspect(&src, &r)["digest"]
    );
}

#[test]
fn progress_bars_on_a_terminal_quiet_in_pipes() {
    let s = Scratch::new("progress");
    let reg = Registry::start(&s, "none", &[]);
    let src = Img::new(&s, "src");
    src.import_busybox(&s, "busybox:test");
    let r = format!("{}/p/bb:1", reg.host);
    src.ok(&["tag", "busybox:test", &r]);
    src.ok(&["push", &r]);
    // In a pipe: status lines only.
    let piped = Img::new(&s, "piped");
    let o = piped.run(&["pull", &r]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
    // On a terminal (script(1) gives the command a pty): a bar per layer.
    let tty = Img::new(&s, "tty");
    let cmd = format!("{} --root {} pull {r}", BERTH_IMG, tty.root.display());
    let o = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("REGISTRY_AUTH_FILE", &tty.auth)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    let layer = layer_digest(&src, &r);
    assert!(
        screen.contains(&layer[7..19]) && screen.contains("done"),
        "{screen}"
    );
}
