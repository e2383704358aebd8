//! config-linux.md "Control groups": resources read back from the host's
//! cgroup files (cgroup v1 controllers on this host; a controller the
//! host lacks is a skip that says so).

use serde_json::{json, Value};

use super::{case, Case};
use crate::harness::{expect_eq, Ctx, Verdict};

/// Whether this host has only the cgroup2 hierarchy.
fn pure_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Creates the container with `resources` and compares one cgroup file:
/// the v1 controller's, or on a pure cgroup v2 host the v2 file `v2` names
/// (None: v2 has no such setting, a skip that says so).
fn resource_case(
    name: &'static str,
    resources: Value,
    controller: &'static str,
    file: &'static str,
    want: &'static str,
    v2: Option<(&'static str, &'static str)>,
) -> Case {
    case(format!("cgroups/{name}"), move |c: &mut Ctx| {
        let (controller, file, want) = if pure_v2() {
            let Some((file, want)) = v2 else {
                return Err(Verdict::Skip(format!(
                    "cgroup v2 has no equivalent of {file}"
                )));
            };
            (file.split('.').next().unwrap_or(controller), file, want)
        } else {
            (controller, file, want)
        };
        let available = if pure_v2() {
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == controller)
        } else {
            std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("cgroup.procs")
                .exists()
        };
        if !available {
            return Err(Verdict::Skip(format!(
                "the {controller} controller is not available on this host"
            )));
        }
        c.set("/linux/resources", resources.clone());
        c.sh("sleep 60");
        c.create()?;
        if c.cgroup_file(controller, "cgroup.procs").is_none() {
            return crate::harness::fail(format!("no {controller} cgroup for the container"));
        }
        match c.cgroup_file(controller, file) {
            Some(got) => expect_eq(file, &got, want),
            None => Err(Verdict::Skip(format!(
                "this kernel has no {controller}/{file}"
            ))),
        }
    })
}

pub fn cases() -> Vec<Case> {
    vec![
        resource_case(
            "memory-limit",
            json!({"memory": {"limit": 67108864}}),
            "memory",
            "memory.limit_in_bytes",
            "67108864",
            Some(("memory.max", "67108864")),
        ),
        resource_case(
            "memory-reservation",
            json!({"memory": {"limit": 67108864, "reservation": 33554432}}),
            "memory",
            "memory.soft_limit_in_bytes",
            "33554432",
            Some(("memory.low", "33554432")),
        ),
        resource_case(
            "memory-swap",
            json!({"memory": {"limit": 67108864, "swap": 100663296}}),
            "memory",
            "memory.memsw.limit_in_bytes",
            "100663296",
            Some(("memory.swap.max", "33554432")),
        ),
        resource_case(
            "memory-swappiness",
            json!({"memory": {"swappiness": 37}}),
            "memory",
            "memory.swappiness",
            "37",
            None,
        ),
        resource_case(
            "cpu-shares",
            json!({"cpu": {"shares": 777}}),
            "cpu",
            "cpu.shares",
            "777",
            Some(("cpu.weight", "30")),
        ),
        resource_case(
            "cpu-quota",
            json!({"cpu": {"quota": 33000, "period": 100000}}),
            "cpu",
            "cpu.cfs_quota_us",
            "33000",
            Some(("cpu.max", "33000 100000")),
        ),
        resource_case(
            "cpu-period",
            json!({"cpu": {"quota": 33000, "period": 110000}}),
            "cpu",
            "cpu.cfs_period_us",
            "110000",
            Some(("cpu.max", "33000 110000")),
        ),
        resource_case(
            "cpuset-cpus",
            json!({"cpu": {"cpus": "0"}}),
            "cpuset",
            "cpuset.cpus",
            "0",
            Some(("cpuset.cpus", "0")),
        ),
        resource_case(
            "pids-limit",
            json!({"pids": {"limit": 42}}),
            "pids",
            "pids.max",
            "42",
            Some(("pids.max", "42")),
        ),
        resource_case(
            "blkio-throttle-read-bps",
            json!({"blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]}}),
            "blkio",
            "blkio.throttle.read_bps_device",
            "254:0 1048576",
            None,
        ),
        resource_case(
            "hugetlb-limit",
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 6291456}]}),
            "hugetlb",
            "hugetlb.2MB.limit_in_bytes",
            "6291456",
            Some(("hugetlb.2MB.max", "6291456")),
        ),
        resource_case(
            "network-class-id",
            json!({"network": {"classID": 1048578}}),
            "net_cls,net_prio",
            "net_cls.classid",
            "1048578",
            None,
        ),
        case("cgroups/path-absolute-placement", |c: &mut Ctx| {
            c.sh("sleep 60");
            c.create()?;
            let pid = c.state()?["pid"].to_string();
            let procs = c.cgroup_file("pids", "cgroup.procs").unwrap_or_default();
            crate::harness::check(procs.lines().any(|l| l == pid), || {
                format!("init {pid} not in pids/{}: {procs:?}", c.id)
            })
        }),
        case("cgroups/removed-on-delete", |c: &mut Ctx| {
            c.sh("sleep 60");
            c.create()?;
            let id = c.id.clone();
            let out = c.runtime(&["delete", "--force", &id]);
            crate::harness::check(out.ok(), || format!("delete: {}", out.stderr.trim()))?;
            crate::harness::check(c.cgroup_file("pids", "cgroup.procs").is_none(), || {
                "the cgroup outlived the container".into()
            })
        }),
    ]
}
