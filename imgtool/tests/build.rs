//! `build` against the Dockerfile set in tests/dockerfiles, each image run
//! through `berth`, plus the cache, reproducibility and error paths.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

fn dockerfiles(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dockerfiles")
        .join(name)
}

/// A store with the busybox base image as busybox:test.
fn store(s: &Scratch) -> Img {
    let img = Img::new(s, "store");
    img.import_busybox(s, "busybox:test");
    img
}

fn build(img: &Img, name: &str, extra: &[&str]) -> String {
    let ctx = dockerfiles(name);
    let mut args = vec!["build", "-t", name];
    args.extend_from_slice(extra);
    let ctx = ctx.to_str().unwrap().to_string();
    args.push(&ctx);
    let o = img.run(&args);
    assert!(o.status.success(), "build {name}:\n{}", text(&o));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Bundles `image` and runs it with `berth`; returns stdout.
fn run_image(s: &Scratch, img: &Img, image: &str, args: &[&str]) -> String {
    let b = s.path(&format!("bundle-{}", image.replace([':', '/'], "-")));
    let mut a = vec!["bundle", image, b.to_str().unwrap()];
    if !args.is_empty() {
        a.push("--");
        a.extend_from_slice(args);
    }
    img.ok(&a);
    let out = run_ok(s, &b, &format!("build-{}", image.replace([':', '/'], "-")));
    img.ok(&["rm-bundle", b.to_str().unwrap()]);
    out
}

/// The IDs of the RUN containers berth knows in the store's build state.
fn build_containers(img: &Img) -> String {
    let list = std::process::Command::new(berth())
        .arg("--root")
        .arg(img.root.join("build-runtime"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&list.stdout).trim().to_string()
}

fn config(img: &Img, image: &str) -> serde_json::Value {
    inspect(img, image)["config"].clone()
}

#[test]
fn web_page_image_serves_its_page() {
    let s = Scratch::new("build-web");
    let img = store(&s);
    build(&img, "web", &[]);
    let c = config(&img, "web");
    assert_eq!(
        c["config"]["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}})
    );
    assert_eq!(
        c["config"]["Labels"]["org.opencontainers.image.title"],
        "berth test page"
    );
    assert_eq!(c["config"]["StopSignal"], "SIGKILL");
    // Serve it on a free loopback port and fetch the page back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("web-{}", std::process::id());
    let listen = format!("127.0.0.1:{port}");
    img.ok(&[
        "run", "-d", "--name", &name, "--net", "host", "web", "httpd", "-f", "-v", "-h",
        "/srv/www", "-p", &listen,
    ]);
    let url = format!("http://{listen}/index.html");
    let mut body = String::new();
    for _ in 0..200 {
        let o = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .unwrap();
        if o.status.success() {
            body = String::from_utf8_lossy(&o.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ps = img.ok(&["ps"]);
    img.ok(&["stop", "-t", "5", &name]);
    // httpd -v logs each request to stderr, which the supervisor keeps.
    let logs = img.cmd(&["logs", &name]).output().unwrap();
    img.ok(&["rm", &name]);
    assert_eq!(body, "<h1>hello from berth</h1>\n");
    assert!(ps.contains(&name) && ps.contains("Up"), "{ps}");
    let served = String::from_utf8_lossy(&logs.stderr);
    assert!(served.contains("response:200"), "{}", text(&logs));
    assert!(!img.ok(&["ps", "-a"]).contains(&name));
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let s = Scratch::new("build-multi");
    let img = store(&s);
    let out = build(&img, "multistage", &[]);
    assert!(!out.contains("must not be built"), "{out}");
    assert_eq!(
        run_image(&s, &img, "multistage", &[]).trim(),
        "hello world from a scratch image"
    );
    let c = config(&img, "multistage");
    // FROM scratch: three COPY layers, nothing of busybox's own layer.
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        c["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "/app.sh"])
    );
    // --target stops at a stage.
    build(
        &img,
        "multistage",
        &["--target", "build", "-t", "multistage:build"],
    );
    assert!(config(&img, "multistage:build")["config"]["WorkingDir"] == "/src");
    let err = img.fail(&[
        "build",
        "--target",
        "nosuch",
        dockerfiles("multistage").to_str().unwrap(),
    ]);
    assert!(err.contains("no stage named"), "{err}");
}

#[test]
fn args_and_env_interplay() {
    let s = Scratch::new("build-args");
    let img = store(&s);
    build(&img, "argenv", &[]);
    assert_eq!(
        run_image(&s, &img, "argenv", &[]).trim(),
        "hello default-who|fallback|set|from-env|default-who"
    );
    build(
        &img,
        "argenv",
        &[
            "--build-arg",
            "WHO=cli",
            "--build-arg",
            "EMPTY=given",
            "-t",
            "argenv:2",
        ],
    );
    assert_eq!(
        run_image(&s, &img, "argenv:2", &[]).trim(),
        "hello cli|given|set|from-env|cli"
    );
    let env = config(&img, "argenv:2")["config"]["Env"].to_string();
    assert!(
        env.contains("GREETING=hello cli") && !env.contains("WHO=cli\""),
        "{env}"
    );
    // An unused build arg is only a warning.
    let out = build(
        &img,
        "argenv",
        &["--build-arg", "NOBODY=x", "-t", "argenv:3"],
    );
    assert!(
        out.contains("NOBODY") && out.contains("not consumed"),
        "{out}"
    );
}

#[test]
fn user_owns_its_files() {
    let s = Scratch::new("build-user");
    let img = store(&s);
    build(&img, "user", &[]);
    let out = run_image(&s, &img, "user", &[]);
    assert!(out.contains("uid=1500(app) gid=1500(app)"), "{out}");
    assert!(out.contains("1500:1500 644 data.txt"), "{out}");
    assert!(out.contains("1500:1500 644 made.txt"), "{out}");
    assert!(out.contains("1600:1700 640 /numeric.txt"), "{out}");
}

#[test]
fn workdirs_are_created_and_relative_paths_follow_them() {
    let s = Scratch::new("build-workdir");
    let img = store(&s);
    build(&img, "workdir", &[]);
    let out = run_image(&s, &img, "workdir", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/a/b/c", "{out}");
    assert!(
        out.contains("file.txt") && out.contains("relative"),
        "{out}"
    );
    assert_eq!(config(&img, "workdir")["config"]["WorkingDir"], "/a/b/c");
}

#[test]
fn dockerignore_filters_the_context() {
    let s = Scratch::new("build-ignore");
    let img = store(&s);
    build(&img, "dockerignore", &[]);
    let out = run_image(&s, &img, "dockerignore", &[]);
    let mut files: Vec<&str> = out.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/docs/keep.md",
            "/ctx/keep/k.txt"
        ],
        "{out}"
    );
}

/// Waits up to 20 s for the other stage's mark in the shared cache mount:
/// only a build that runs both stages at once gets past it.
fn rendezvous(me: &str, other: &str) -> String {
    format!(
        "RUN --mount=type=cache,id=meet,target=/meet touch /meet/{me}; i=0; \\\n    while [ ! -e /meet/{other} ]; do i=$((i+1)); [ $i -lt 400 ] || exit 3; sleep 0.05; done; \\\n    echo stage-{me}-done; echo {me} > /{me}\n"
    )
}

#[test]
fn independent_stages_build_side_by_side() {
    let s = Scratch::new("build-parallel");
    let img = store(&s);
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let df = format!(
        "FROM busybox:test AS a\n{}\nFROM busybox:test AS b\n{}\nFROM scratch\nCOPY --from=a /a /\nCOPY --from=b /b /\n",
        rendezvous("a", "b"),
        rendezvous("b", "a")
    );
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let o = img.run(&["build", "-t", "parallel", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // RUN output is streamed behind its step's number.
    let err = String::from_utf8_lossy(&o.stderr);
    for stage in ["a", "b"] {
        let line = err
            .lines()
            .find(|l| l.ends_with(&format!("stage-{stage}-done")))
            .unwrap_or_else(|| panic!("no output of stage {stage}: {err}"));
        assert!(line.starts_with('#'), "{line}");
    }
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("stage-"),
        "RUN output belongs on stderr"
    );
    assert_eq!(
        config(&img, "parallel")["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A failing stage stops the others, killing their RUN steps, and the
    // build reports the failure that came first.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test AS slow\nRUN echo slow-started; sleep 600\n\
         FROM busybox:test AS broken\nRUN exit 5\n\
         FROM scratch\nCOPY --from=slow /bin/busybox /a\nCOPY --from=broken /bin/busybox /b\n",
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let o = img.run(&["build", "-t", "broken", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        t0.elapsed().as_secs() < 300,
        "the slow stage was not stopped"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Dockerfile:4: RUN exit 5: exit code 5"),
        "{}",
        text(&o)
    );
    assert_eq!(build_containers(&img), "");
    assert!(mounts_below(&img.root).is_empty());
}

#[test]
fn instructions_heredocs_mounts_onbuild_and_metadata() {
    let s = Scratch::new("build-features");
    let img = store(&s);
    build(&img, "features", &["--build-arg", "FLAVOR=berry"]);
    let out = run_image(&s, &img, "features", &[]);
    for want in [
        "onbuild-ran",
        "from-tar",
        "line1",
        "line2",
        "bind-content",
        "glob-1.txt",
        "glob-2.txt",
        "key=berry",
    ] {
        assert!(out.contains(want), "missing {want}:\n{out}");
    }
    assert!(!out.contains("other.txt"), "{out}");
    let c = config(&img, "features");
    assert_eq!(c["config"]["Healthcheck"]["Interval"], 30_000_000_000i64);
    assert_eq!(c["config"]["Healthcheck"]["Retries"], 2);
    assert!(c["config"]["Volumes"]["/data"].is_object());
    assert_eq!(c["config"]["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert!(
        c["config"].get("OnBuild").is_none(),
        "triggers are consumed"
    );
    // The cache mount persists across builds, and is not in the image.
    build(
        &img,
        "features",
        &[
            "--no-cache",
            "-t",
            "features:2",
            "--build-arg",
            "FLAVOR=berry",
        ],
    );
    assert_eq!(
        run_image(
            &s,
            &img,
            "features:2",
            &["cat /cache-lines.txt; ls /cache 2>&1 | head -1"]
        )
        .lines()
        .next()
        .unwrap()
        .trim(),
        "2"
    );
}

#[test]
fn run_bind_mounts_from_stages_and_the_context_key_the_cache() {
    let s = Scratch::new("build-bind-from");
    let img = store(&s);
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test AS tools\n\
         RUN echo tool-v1 > /tool.txt; mkdir -p /etc; echo stage > /etc/stage-marker; ln -s /etc /escape\n\
         FROM busybox:test\n\
         RUN --mount=type=bind,from=tools,source=/tool.txt,target=/mnt/tool cat /mnt/tool > /from-stage.txt\n\
         RUN --mount=type=bind,from=tools,source=/escape,target=/mnt/e cat /mnt/e/stage-marker && test ! -e /mnt/e/debian_version\n\
         RUN --mount=type=bind,source=input.txt,target=/mnt/in cat /mnt/in > /from-context.txt\n\
         RUN --mount=type=bind,rw,target=/ctx echo x > /ctx/written-by-run\n",
    )
    .unwrap();
    std::fs::write(ctx.join("input.txt"), "one\n").unwrap();
    let c = ctx.to_str().unwrap();
    // A link to / inside the stage resolves inside the stage, not on the
    // host (whose /etc has debian_version).
    assert!(Path::new("/etc/debian_version").exists());
    img.ok(&["build", "-t", "bindfrom", c]);
    // An rw bind mount's writes are the step's alone, as with docker.
    assert!(!ctx.join("written-by-run").exists());
    let show = "cat /from-stage.txt /from-context.txt";
    assert_eq!(
        run_image(&s, &img, "bindfrom", &["sh", "-c", show]),
        "tool-v1\none\n"
    );
    // The bound file's content is part of the step's key: changing it
    // reruns that step, and only that one.
    std::fs::write(ctx.join("input.txt"), "two\n").unwrap();
    let o = img.run(&["build", "-t", "bindfrom:2", c]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).matches("CACHED").count(),
        3,
        "{}",
        text(&o)
    );
    assert_eq!(
        run_image(&s, &img, "bindfrom:2", &["sh", "-c", show]),
        "tool-v1\ntwo\n"
    );
    // What .dockerignore leaves out is not in the context for mounts either.
    std::fs::write(ctx.join(".dockerignore"), "input.txt\n").unwrap();
    let err = img.fail(&["build", "-t", "bindfrom:3", c]);
    assert!(
        err.contains("\"input.txt\" not found in the build context"),
        "{err}"
    );
    // A mounted context directory shows it without the excluded file.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nRUN --mount=type=bind,target=/ctx test -e /ctx/Dockerfile && test ! -e /ctx/input.txt\n",
    )
    .unwrap();
    img.ok(&["build", "-t", "bindfrom:4", c]);
}

#[test]
fn sources_resolve_inside_the_context_and_stages() {
    let s = Scratch::new("build-symlinks");
    let img = store(&s);
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // An archive outside the context, reachable through a symlink in it.
    let outside = s.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "host secret\n").unwrap();
    let tar = s.path("outside.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&outside)
        .arg("-cf")
        .arg(&tar)
        .arg("secret.txt")
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(&tar, ctx.join("loot.tar")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nADD loot.tar /x/\n",
    )
    .unwrap();
    let err = img.fail(&["build", "-t", "loot", ctx.to_str().unwrap()]);
    assert!(err.contains("loot.tar"), "{err}");
    // A link to / in a stage leads to the stage's own root: COPY --from
    // finds the stage's file, not the host's /etc/debian_version.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test AS s\nRUN ln -s / /l; mkdir -p /etc; echo stage > /etc/mark\n\
         FROM busybox:test\nCOPY --from=s /l/etc/mark /mark\nCOPY --from=s /l/etc/debian_versio[n] /dv/\n",
    )
    .unwrap();
    let err = img.fail(&["build", "-t", "links", ctx.to_str().unwrap()]);
    assert!(err.contains("debian_versio[n]"), "{err}");
    // .dockerignore judges where a symlink leads, not its name.
    std::fs::create_dir_all(ctx.join("secrets")).unwrap();
    std::fs::write(ctx.join("secrets/key"), "k\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "secrets\n").unwrap();
    std::os::unix::fs::symlink("secrets", ctx.join("l")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:test\nCOPY l /l/\n").unwrap();
    let err = img.fail(&["build", "-t", "ignored", ctx.to_str().unwrap()]);
    assert!(err.contains("excluded by .dockerignore"), "{err}");
}

#[test]
fn cache_reuses_unchanged_steps_and_rebuilds_from_the_change() {
    let s = Scratch::new("build-cache");
    let img = store(&s);
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n",
    )
    .unwrap();
    std::fs::write(ctx.join("a.txt"), "v1\n").unwrap();
    let c = ctx.to_str().unwrap();
    let first = img.ok(&["build", "-q", "-t", "cached", c]);
    // A rebuild served from the cache is the same image, even a second
    // later (history and creation times come from the cached steps).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = img.run(&["build", "-t", "cached", c]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("CACHED").count(), 3, "{err}");
    assert_eq!(img.ok(&["build", "-q", "-t", "cached", c]), first);
    std::fs::write(ctx.join("a.txt"), "v2\n").unwrap();
    let o = img.run(&["build", "-t", "cached", c]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("CACHED").count(),
        1,
        "only the first RUN is reused:\n{err}"
    );
    assert_eq!(
        run_image(&s, &img, "cached", &["cat", "/copy"]).trim(),
        "v2"
    );
    let o = img.run(&["build", "--no-cache", "-t", "cached", c]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).matches("CACHED").count(),
        0
    );
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let s = Scratch::new("build-repro");
    let mut digests = Vec::new();
    for store_name in ["one", "two"] {
        let mut img = Img::new(&s, store_name);
        img.env
            .push(("SOURCE_DATE_EPOCH".into(), "1700000000".into()));
        img.import_busybox(&s, "busybox:test");
        build(&img, "multistage", &["--no-cache"]);
        build(&img, "argenv", &["--no-cache"]);
        digests.push((
            inspect(&img, "multistage")["digest"].clone(),
            inspect(&img, "argenv")["digest"].clone(),
        ));
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn bad_dockerfiles_name_the_line() {
    let s = Scratch::new("build-bad");
    let img = store(&s);
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let c = ctx.to_str().unwrap();
    for (df, want) in [
        ("FROM busybox:test\nFROBNICATE x\n", "Dockerfile:2:1"),
        ("FROM busybox:test\nCOPY onlyone\n", "Dockerfile:2"),
        ("RUN true\n", "Dockerfile:1"),
        ("FROM busybox:test\nCOPY missing.txt /\n", "missing.txt"),
        (
            "FROM busybox:test\nADD https://example.com/x /\n",
            "remote sources are not supported",
        ),
        (
            "FROM busybox:test\nUSER 1000\nCOPY --chown=nosuchuser Dockerfile /\n",
            "unable to find user nosuchuser",
        ),
    ] {
        std::fs::write(ctx.join("Dockerfile"), df).unwrap();
        let err = img.fail(&["build", "-t", "bad", c]);
        assert!(err.contains(want), "{df:?}: {err}");
    }
    // A failing RUN stops the build with its status and line.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nRUN echo before\nRUN exit 7\nRUN echo never\n",
    )
    .unwrap();
    let o = img.run(&["build", "-t", "bad", c]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Dockerfile:3: RUN exit 7: exit code 7"),
        "{err}"
    );
    assert!(img.fail(&["inspect", "bad"]).contains("not known"));
}

#[test]
fn killed_build_leaves_the_store_consistent() {
    let s = Scratch::new("build-kill");
    let img = store(&s);
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        // The step's own line shows the command: wait for what only its
        // output says.
        "FROM busybox:test\nRUN echo ready-$((1+1)) > /dev/stderr; sleep 60\n",
    )
    .unwrap();
    let images_before = std::fs::read(img.root.join("images.json")).unwrap();
    // Starts the build, waits for its RUN step, then kills the builder
    // outright.
    let kill_mid_run = || {
        let mut child = img
            .cmd(&["build", "-t", "killed", ctx.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains("ready-2") {
            let n = std::io::Read::read(&mut stderr, &mut buf).unwrap();
            assert!(n > 0, "build ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            std::fs::read(img.root.join("images.json")).unwrap(),
            images_before
        );
        // Its mounts went with its private mount namespace.
        assert!(
            mounts_below(&img.root).is_empty(),
            "{:?}",
            mounts_below(&img.root)
        );
        assert_ne!(build_containers(&img), "", "the RUN container died with it");
    };
    // prune deletes the orphaned RUN container.
    kill_mid_run();
    img.ok(&["prune"]);
    assert_eq!(build_containers(&img), "", "orphaned build container left");
    // So does the next build, which works.
    kill_mid_run();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:test\nRUN true\n").unwrap();
    img.ok(&["build", "-t", "after", ctx.to_str().unwrap()]);
    assert_eq!(build_containers(&img), "", "orphaned build container left");
    img.ok(&["prune"]);
    assert_eq!(std::fs::read_dir(img.root.join("tmp")).unwrap().count(), 0);
}
