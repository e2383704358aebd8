//! Networks: the default bridge with published ports, user networks that
//! resolve names, connect/disconnect, and teardown after stop, rm, a
//! killed supervisor and a crashed host — through the real CNI plugins,
//! iptables and busybox httpd.
//!
//! Every berth-img command runs inside a network namespace the test made
//! ("the host", [`TestNetns`]), with a veth into a second one ("another
//! host"), so the bridges, veths and rules live there and vanish with it:
//! the machine's own network is never touched. Only addresses inside
//! those namespaces are used.

mod common;

use std::net::Ipv4Addr;

use common::*;

/// "The host": a namespace with 198.51.100.1 on a veth to "another host"
/// (198.51.100.2), and a store with `web:1` imported.
struct Host {
    // Dropped in this order: the namespaces (and what runs in them), then
    // the store's files.
    ns: TestNetns,
    other: TestNetns,
    img: Img,
    scratch: Scratch,
}

impl Host {
    fn new(tag: &str) -> Host {
        let scratch = Scratch::new(tag);
        let img = Img::new(&scratch, "store");
        import_web(&scratch, &img, &[]);
        let ns = TestNetns::new(tag);
        let other = TestNetns::new(&format!("{tag}-o"));
        ns.link_to(&other, "198.51.100.1/24", "198.51.100.2/24");
        Host {
            ns,
            other,
            img,
            scratch,
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.img.ok_in(&self.ns, args)
    }

    fn fail(&self, args: &[&str]) -> String {
        self.img.fail_in(&self.ns, args)
    }

    /// curl from `ns`, retried while the server starts.
    fn curl(ns: &TestNetns, url: &str) -> String {
        eventually(10, || {
            let o = ns.run(&["curl", "-sf", "--max-time", "2", url]);
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .unwrap_or_else(|| panic!("curl {url} in {}: no answer", ns.name))
    }

    /// Files of host-local's leases (addresses) in the store.
    fn leases(&self) -> Vec<String> {
        let dir = self.img.root.join("networks/ipam");
        let mut out = Vec::new();
        for net in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.parse::<Ipv4Addr>().is_ok() {
                    out.push(n);
                }
            }
        }
        out
    }

    /// What a container leaves when it is gone: none of its veths, rules,
    /// leases, pinned namespaces or records.
    /// No firewall rule beside `before`, no pinned namespace and no mount
    /// of the store's is left.
    fn assert_nothing_left(&self, before: &[String]) {
        assert_eq!(leftovers(before, &self.ns.rules()), Vec::<String>::new());
        assert_eq!(
            std::fs::read_dir(self.img.root.join("netns"))
                .unwrap()
                .count(),
            0
        );
        assert!(
            mounts_below(&self.img.root).is_empty(),
            "{:?}",
            mounts_below(&self.img.root)
        );
    }

    fn assert_released(&self, ip: &str) {
        let rules = self.ns.rules();
        assert!(
            !rules
                .iter()
                .any(|r| r.contains(&format!("{ip}/32")) || r.contains(&format!("{ip}:"))),
            "rules for {ip} left:\n{}",
            rules.join("\n")
        );
        assert!(!self.leases().contains(&ip.to_string()), "lease {ip} left");
    }

    fn ip_of(&self, name: &str) -> String {
        let ps: serde_json::Value =
            serde_json::from_str(&self.ok(&["--json", "ps", "-a"])).unwrap();
        ps.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["NetworkSettings"]["IPAddress"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

#[test]
fn published_ports_reach_the_container_from_everywhere() {
    let h = Host::new("net-ports");
    let _cleanup = RemoveContainers {
        img: &h.img,
        ns: Some(&h.ns),
    };
    let before = h.ns.rules();

    // The tutorial: run -d -p 8080:80, open the page.
    assert_eq!(
        h.ok(&["run", "-d", "--name", "web", "-p", "8080:80", "web:1"])
            .trim(),
        "web"
    );
    assert_eq!(Host::curl(&h.ns, "http://127.0.0.1:8080/"), PAGE);
    // The host's own address, from the host and from another host.
    assert_eq!(Host::curl(&h.ns, "http://198.51.100.1:8080/"), PAGE);
    assert_eq!(Host::curl(&h.other, "http://198.51.100.1:8080/"), PAGE);
    let ip = h.ip_of("web");
    assert!(ip.starts_with("10.87."), "{ip}");
    let ps = h.ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
    assert_eq!(h.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
    assert_eq!(h.ok(&["port", "web", "80/tcp"]), "0.0.0.0:8080\n");
    assert!(h
        .fail(&["port", "web", "81"])
        .contains("no public port '81/tcp'"));
    let ps: serde_json::Value = serde_json::from_str(&h.ok(&["--json", "ps"])).unwrap();
    let settings = &ps[0]["NetworkSettings"];
    assert_eq!(
        settings["Ports"]["80/tcp"][0]["HostPort"], "8080",
        "{settings}"
    );
    assert_eq!(settings["Networks"]["bridge"]["IPAddress"], ip.as_str());
    assert_eq!(h.ok(&["network", "check", "web"]), "web: ok\n");

    // A host port that is taken, and bad flags, fail naming the flag.
    assert!(h
        .fail(&["run", "-d", "--name", "dup", "-p", "8080:80", "web:1"])
        .contains("host port 8080/tcp is already published"));
    let e = h.fail(&["run", "-d", "-p", "80:99999", "web:1"]);
    assert!(
        e.contains("invalid --publish") && e.contains("80:99999"),
        "{e}"
    );
    assert!(h
        .fail(&["run", "-d", "--net", "nonet", "web:1"])
        .contains("network nonet: not found"));
    // Failed runs leave nothing: no container, no lease beyond web's.
    assert_eq!(h.img.container_names(), ["web"]);
    assert_eq!(h.leases(), vec![ip.clone()]);

    // -p 80: a free host port; -P: every EXPOSEd port.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "auto",
        "-p",
        "127.0.0.1::80",
        "web:1",
    ]);
    let line = h.ok(&["port", "auto"]);
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    assert!(line.starts_with("80/tcp -> 127.0.0.1:"), "{line}");
    assert_eq!(
        Host::curl(&h.ns, &format!("http://127.0.0.1:{port}/")),
        PAGE
    );
    h.ok(&["run", "-d", "--name", "all", "-P", "web:1"]);
    let line = h.ok(&["port", "all", "80"]);
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    assert_ne!(port, "8080");
    assert_eq!(
        Host::curl(&h.other, &format!("http://198.51.100.1:{port}/")),
        PAGE
    );

    // Another container reaches the published port through the host's
    // address; the default bridge resolves no names, as docker's.
    let o = h.ok(&[
        "run",
        "--rm",
        "web:1",
        "sh",
        "-c",
        "wget -qO- http://198.51.100.1:8080/; cat /etc/hosts",
    ]);
    assert!(o.starts_with(PAGE), "{o}");
    assert!(!o.contains("web"), "{o}");
    // Outbound: NAT to another host, which has no route back to the
    // bridge's subnet, so only a masqueraded connection can succeed.
    let served = h.scratch.path("other-www");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("who"), "another host\n").unwrap();
    let mut server = h
        .other
        .cmd(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            "198.51.100.2:9000",
            "-h",
            served.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let o = eventually(10, || {
        let o = h
            .img
            .cmd_in(
                &h.ns,
                &[
                    "run",
                    "--rm",
                    "web:1",
                    "wget",
                    "-qO-",
                    "http://198.51.100.2:9000/who",
                ],
            )
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(o.as_deref(), Some("another host\n"));

    // stop releases the address and the rules; rm the rest.
    let auto_ip = h.ip_of("auto");
    h.ok(&["stop", "-t", "0", "web"]);
    h.assert_released(&ip);
    assert!(h.ok(&["port", "web"]).is_empty());
    assert!(h
        .fail(&["network", "check", "web"])
        .contains("no network to check"));
    h.ok(&["rm", "-f", "web", "auto", "all"]);
    h.assert_released(&auto_ip);
    assert!(h.leases().is_empty(), "{:?}", h.leases());
    assert!(h.ns.links("veth").is_empty(), "{:?}", h.ns.links(""));
    h.assert_nothing_left(&before);
}

#[test]
fn user_networks_resolve_names_and_connect() {
    let h = Host::new("net-user");
    let _cleanup = RemoveContainers {
        img: &h.img,
        ns: Some(&h.ns),
    };
    let before = h.ns.rules();
    let id = h.ok(&["network", "create", "--label", "tier=front", "front"]);
    assert_eq!(id.trim().len(), 64);
    h.ok(&["network", "create", "--subnet", "10.86.77.0/24", "back"]);
    assert!(h
        .fail(&["network", "create", "back"])
        .contains("already exists"));
    assert!(h
        .fail(&["network", "create", "--subnet", "10.86.77.128/25", "clash"])
        .contains("overlaps 10.86.77.0/24"));
    assert!(h
        .fail(&["network", "create", "host"])
        .contains("pre-defined"));
    let ls = h.ok(&["network", "ls"]);
    for n in ["bridge", "front", "back", "host", "none"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{ls}"
        );
    }

    // Names and aliases resolve on the user network.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "front",
        "--network-alias",
        "database",
        "web:1",
    ]);
    let o = h.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "web:1",
        "sh",
        "-c",
        "wget -qO- http://db/ && wget -qO- http://database/",
    ]);
    assert_eq!(o, format!("{PAGE}{PAGE}"));
    let inspect: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "front"])).unwrap();
    let net = &inspect[0];
    assert_eq!(net["Labels"]["tier"], "front");
    let subnet = net["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        subnet.starts_with("10.86.") && subnet.ends_with("/24"),
        "{subnet}"
    );
    let members: Vec<&str> = net["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["db"]);

    // connect: a container on the default bridge joins front; both see
    // each other by name and alias; disconnect undoes it.
    h.ok(&["run", "-d", "--name", "app", "web:1"]);
    let wget_db = || {
        h.img
            .cmd_in(&h.ns, &["exec", "app", "wget", "-qO-", "http://database/"])
            .output()
            .unwrap()
    };
    assert!(!wget_db().status.success());
    h.ok(&[
        "network",
        "connect",
        "--alias",
        "application",
        "front",
        "app",
    ]);
    assert_eq!(String::from_utf8_lossy(&wget_db().stdout), PAGE);
    let hosts = h.ok(&["exec", "db", "cat", "/etc/hosts"]);
    assert!(
        hosts.lines().any(|l| l.ends_with("\tapp application")),
        "{hosts}"
    );
    assert_eq!(
        h.ok(&["exec", "db", "wget", "-qO-", "http://application/"]),
        PAGE
    );
    assert!(h
        .fail(&["network", "connect", "front", "app"])
        .contains("already connected"));
    h.ok(&["network", "disconnect", "front", "app"]);
    assert!(!wget_db().status.success());
    assert!(!h.ok(&["exec", "db", "cat", "/etc/hosts"]).contains("app"));

    // Two networks at once: an interface on each.
    let o = h.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--network",
        "back",
        "web:1",
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(
        o.contains("eth0") && o.contains("eth1") && o.contains("10.86.77."),
        "{o}"
    );
    // Another container's namespace, joined by path.
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--net",
            "container:db",
            "web:1",
            "wget",
            "-qO-",
            "http://127.0.0.1/"
        ]),
        PAGE
    );
    // none: loopback only.
    let o = h.ok(&["run", "--rm", "--net", "none", "web:1", "ip", "-o", "link"]);
    assert!(o.contains("lo:") && !o.contains("eth0"), "{o}");

    // A network in use stays; removed, its bridge goes.
    assert!(h
        .fail(&["network", "rm", "front"])
        .contains("active endpoints: db"));
    let front_bridge = net["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.ns.links(&front_bridge).len(), 1);
    h.ok(&["rm", "-f", "db", "app"]);
    h.ok(&["network", "rm", "front", "back"]);
    assert!(h.ns.links(&front_bridge).is_empty());
    assert!(h
        .fail(&["network", "inspect", "front"])
        .contains("not found"));
    assert!(h.leases().is_empty(), "{:?}", h.leases());
    assert_eq!(leftovers(&before, &h.ns.rules()), Vec::<String>::new());
}

/// The supervisor and init of a detached container, from its state.
fn pids(h: &Host, name: &str) -> (i32, i32) {
    let c: serde_json::Value = serde_json::from_slice(
        &std::fs::read(h.img.root.join("containers").join(name).join("state.json")).unwrap(),
    )
    .unwrap();
    (
        c["supervisor"]["pid"].as_i64().unwrap() as i32,
        c["init"]["pid"].as_i64().unwrap() as i32,
    )
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn killed_supervisors_and_crashes_leave_nothing() {
    let h = Host::new("net-kill");
    let _cleanup = RemoveContainers {
        img: &h.img,
        ns: Some(&h.ns),
    };
    let netns_files = || std::fs::read_dir(h.img.root.join("netns")).unwrap().count();

    // The supervisor alone is killed: the container runs on, unsupervised;
    // stop releases its network (no poststop hook will run).
    h.ok(&["run", "-d", "--name", "orphan", "-p", "8080:80", "web:1"]);
    assert_eq!(Host::curl(&h.ns, "http://127.0.0.1:8080/"), PAGE);
    let ip = h.ip_of("orphan");
    let (supervisor, _) = pids(&h, "orphan");
    kill9(supervisor);
    assert_eq!(Host::curl(&h.ns, "http://127.0.0.1:8080/"), PAGE);
    h.ok(&["stop", "-t", "0", "orphan"]);
    h.assert_released(&ip);
    assert_eq!(netns_files(), 0);
    h.ok(&["rm", "orphan"]);

    // The supervisor and the container die at once (kill -9 of both):
    // nothing runs berth delete; the next command collects.
    h.ok(&["run", "-d", "--name", "victim", "-p", "8080:80", "web:1"]);
    assert_eq!(Host::curl(&h.ns, "http://127.0.0.1:8080/"), PAGE);
    let ip = h.ip_of("victim");
    let (supervisor, init) = pids(&h, "victim");
    kill9(supervisor);
    kill9(init);
    assert_eq!(h.ns.links("veth").len(), 1);
    let ps = h.ok(&["ps", "-a"]);
    assert!(ps.contains("victim") && ps.contains("Exited"), "{ps}");
    h.assert_released(&ip);
    assert!(h.ns.links("veth").is_empty(), "{:?}", h.ns.links(""));
    assert_eq!(netns_files(), 0);
    h.ok(&["rm", "victim"]);

    // A host crash: processes, mounts (the pinned namespace, and with it
    // the veth) and iptables rules are gone after the reboot; the lease
    // and the record remain, and the next command releases them.
    h.ok(&["run", "-d", "--name", "crashed", "-p", "8081:80", "web:1"]);
    let ip = h.ip_of("crashed");
    assert!(h.leases().contains(&ip));
    let (supervisor, init) = pids(&h, "crashed");
    kill9(supervisor);
    kill9(init);
    let pinned = h.img.root.join("netns/crashed");
    nix::mount::umount2(&pinned, nix::mount::MntFlags::MNT_DETACH).unwrap();
    for table in ["nat", "filter"] {
        h.ns.ok(&["iptables", "-t", table, "-F"]);
        h.ns.ok(&["iptables", "-t", table, "-X"]);
    }
    h.ok(&["volume", "ls"]);
    assert!(h.leases().is_empty(), "{:?}", h.leases());
    assert!(!pinned.exists());
    h.ok(&["rm", "crashed"]);
    // The kernel frees a namespace (and its veth) a moment after its last
    // user goes.
    assert!(eventually(10, || h.ns.links("veth").is_empty().then_some(())).is_some());
    assert!(
        mounts_below(&h.img.root).is_empty(),
        "{:?}",
        mounts_below(&h.img.root)
    );
}

/// A stopped container started again gets its networks back: the same
/// published host ports (chosen ones too), its peers' names; a rename
/// reaches the peers; a restart policy rewires each run.
#[test]
fn start_rename_and_restarts_rewire_the_network() {
    let h = Host::new("net-life");
    let _cleanup = RemoveContainers {
        img: &h.img,
        ns: Some(&h.ns),
    };
    let before = h.ns.rules();
    h.ok(&["network", "create", "front"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "-p",
        "8080:80",
        "-p",
        "80",
        "web:1",
    ]);
    let chosen = h.ok(&["port", "web"]);
    assert_eq!(chosen.lines().count(), 2, "{chosen}");
    let ip = h.ip_of("web");
    let inspect: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "web"])).unwrap();
    let settings = &inspect[0]["NetworkSettings"];
    assert_eq!(settings["IPAddress"], ip.as_str());
    assert_eq!(settings["Ports"]["80/tcp"].as_array().unwrap().len(), 2);
    assert_eq!(
        inspect[0]["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        "8080"
    );
    let ps = h.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");

    h.ok(&["stop", "-t", "0", "web"]);
    h.assert_released(&ip);
    h.ok(&["start", "web"]);
    assert_eq!(h.ok(&["port", "web"]), chosen);
    assert_eq!(Host::curl(&h.ns, "http://127.0.0.1:8080/"), PAGE);
    let random = chosen
        .lines()
        .find(|l| !l.ends_with(":8080"))
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        Host::curl(&h.other, &format!("http://198.51.100.1:{random}/")),
        PAGE
    );

    // A peer resolves the new name after a rename.
    h.ok(&["run", "-d", "--name", "app", "--network", "front", "web:1"]);
    assert_eq!(h.ok(&["exec", "app", "wget", "-qO-", "http://web/"]), PAGE);
    h.ok(&["rename", "web", "site"]);
    let hosts = h.ok(&["exec", "app", "cat", "/etc/hosts"]);
    assert!(
        hosts.lines().any(|l| l.ends_with("\tsite")) && !hosts.contains("\tweb"),
        "{hosts}"
    );
    assert_eq!(h.ok(&["exec", "app", "wget", "-qO-", "http://site/"]), PAGE);
    let members: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "front"])).unwrap();
    let names: Vec<&str> = members[0]["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"site"), "{names:?}");

    // The supervisor rewires every run of a restarting container.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--network",
        "front",
        "--restart",
        "always",
        "web:1",
        "sh",
        "-c",
        "httpd -f -p 80 -h /www & sleep 2; exit 1",
    ]);
    let restarted = eventually(30, || {
        let n: u64 = h
            .ok(&["inspect", "-f", "{{.RestartCount}}", "flaky"])
            .trim()
            .parse()
            .unwrap();
        (n >= 2).then_some(())
    });
    assert!(restarted.is_some());
    let mut last = String::new();
    let served = eventually(30, || {
        let o = h
            .img
            .cmd_in(&h.ns, &["exec", "app", "wget", "-qO-", "http://flaky/"])
            .output()
            .unwrap();
        last = text(&o);
        (String::from_utf8_lossy(&o.stdout) == PAGE).then_some(())
    });
    if served.is_none() {
        // What each container and the peer's name table looked like.
        let show = |args: &[&str]| text(&h.img.cmd_in(&h.ns, args).output().unwrap());
        panic!(
            "{last}\n{}\n{}\n{}",
            show(&["ps", "-a"]),
            show(&["logs", "app"]),
            show(&["exec", "app", "cat", "/etc/hosts"])
        );
    }
    h.ok(&["stop", "-t", "0", "flaky"]);
    assert_eq!(
        h.ok(&["inspect", "-f", "{{.State.Status}}", "flaky"])
            .trim(),
        "exited"
    );

    h.ok(&["rm", "-f", "site", "app", "flaky"]);
    h.ok(&["network", "rm", "front"]);
    assert!(h.leases().is_empty(), "{:?}", h.leases());
    h.assert_nothing_left(&before);
}
