//! The systemd cgroup driver (`--systemd-cgroup`), as runc's
//! `libcontainer/cgroups/systemd`: the container's cgroup is a transient
//! scope that systemd makes and owns, asked for over D-Bus.
//!
//! - `linux.cgroupsPath` is `slice:prefix:name`: the unit `prefix-name.scope`
//!   (or `name` itself when it is a slice) in `slice` (`system.slice` when
//!   empty). Its cgroup is the slice's path as systemd nests slices
//!   (`a-b.slice` lives in `a.slice/a-b.slice`) plus the unit.
//! - `create` starts the unit with the init's PID, `Delegate=yes` and the
//!   resource properties systemd understands ([`properties`]), waits for
//!   the start job, then writes every resource to the cgroup files as the
//!   cgroupfs driver does (and fills the v1 hierarchies systemd leaves out).
//! - `update` sets the properties again and writes the files; `delete`
//!   stops the unit and waits for it to be gone. Everything else (pause,
//!   kill --all, ps, events) reads and writes the cgroup files.
//!
//! berth talks to systemd itself over its private socket
//! (/run/systemd/private, root only: no bus daemon needed), or, for an
//! unprivileged user (also root in a user namespace whose root is an
//! ordinary user outside, as rootless podman runs its runtime: see
//! [`crate::rootless::unprivileged_on_host`]), the user manager's
//! (`$XDG_RUNTIME_DIR/systemd/private`).
//! A direct connection gets the manager's signals (JobRemoved) without
//! asking: `Subscribe` is for the bus, and on a direct connection made
//! just for it systemd never answers.
//! The D-Bus client is our own ([`dbus`]), synchronous and thread-free as
//! berth's fork-like clone of the init requires. libdbus (and the other
//! Rust clients) authenticate by sending `geteuid()`, which the user
//! manager refuses from rootless podman's user namespace (0 there, the
//! user's uid to systemd); ours lets systemd take the uid from the socket.

mod dbus;
pub mod properties;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
pub use dbus::Value;
use dbus::{Connection, MethodCall, RemoteError};

/// One unit property: name and value.
pub type Property = (String, Value);

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
/// How long a start or stop job may take (runc waits as long).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether systemd is the init of this host (as sd_booted(3) decides).
pub fn is_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `slice:prefix:name`, split and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPath {
    pub slice: String,
    pub unit: String,
    /// The cgroup of the manager the unit belongs to: `/` for the system
    /// manager, the user manager's own (`/user.slice/user-1000.slice/
    /// user@1000.service`) for an unprivileged user.
    pub manager_root: PathBuf,
}

impl UnitPath {
    /// runc's reading of a systemd cgroupsPath; absent means
    /// `system.slice:berth:<id>`.
    pub fn parse(path: Option<&str>, id: &str) -> Result<UnitPath> {
        let default_slice = if crate::rootless::unprivileged_on_host() {
            // As runc: a user manager has no system.slice.
            "user.slice"
        } else {
            "system.slice"
        };
        let (slice, prefix, name) = match path.filter(|p| !p.is_empty()) {
            None => ("", "berth", id),
            Some(p) => {
                let parts: Vec<&str> = p.split(':').collect();
                if parts.len() != 3 {
                    return Err(Error::Config(format!(
                        "linux.cgroupsPath {p:?}: expected \"slice:prefix:name\" for systemd cgroups"
                    )));
                }
                (parts[0], parts[1], parts[2])
            }
        };
        let slice = if slice.is_empty() {
            default_slice
        } else {
            slice
        };
        if !slice.ends_with(".slice") || slice.contains('/') {
            return Err(Error::Config(format!(
                "linux.cgroupsPath: {slice:?} is not a slice name"
            )));
        }
        if name.is_empty() || name.contains('/') || prefix.contains('/') {
            return Err(Error::Config(format!(
                "linux.cgroupsPath: invalid unit name {prefix:?}-{name:?}"
            )));
        }
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        Ok(UnitPath {
            slice: slice.to_string(),
            unit,
            manager_root: PathBuf::from("/"),
        })
    }

    /// The cgroup, absolute within each hierarchy: the slice nested as
    /// systemd nests it, then the unit.
    pub fn cgroup(&self) -> Result<PathBuf> {
        let inner = if self.unit.ends_with(".slice") {
            // A slice unit of its own: its name nests like any slice.
            expand_slice(&self.unit)?
        } else {
            expand_slice(&self.slice)?.join(&self.unit)
        };
        Ok(self
            .manager_root
            .join(inner.strip_prefix("/").unwrap_or(&inner)))
    }
}

/// systemd's slice nesting: `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`;
/// `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let bad = || Error::Config(format!("linux.cgroupsPath: invalid slice name {slice:?}"));
    let name = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if name == "-" {
        return Ok(PathBuf::from("/"));
    }
    if name.is_empty()
        || name.contains('/')
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
    {
        return Err(bad());
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for (i, part) in name.split('-').enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// A connection to the service manager.
pub struct Manager {
    // The driver's API takes `&self`; calls are one at a time anyway.
    conn: RefCell<Connection>,
}

impl Manager {
    /// Connects to the system manager (root) or the caller's user manager.
    pub fn connect() -> Result<Manager> {
        let socket = if crate::rootless::unprivileged_on_host() {
            let dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).ok_or_else(|| {
                Error::Unsupported(
                    "--systemd-cgroup without root: XDG_RUNTIME_DIR is not set, so the user's systemd is not reachable".into(),
                )
            })?;
            PathBuf::from(dir).join("systemd/private")
        } else {
            PathBuf::from("/run/systemd/private")
        };
        let conn = Connection::open(&socket, CALL_TIMEOUT).map_err(|e| {
            Error::Other(format!("connect to systemd at {}: {e}", socket.display()))
        })?;
        Ok(Manager {
            conn: RefCell::new(conn),
        })
    }

    /// Calls a method of the manager; `what` names it (and its unit) in
    /// errors. The peer's error answer is the caller's to judge.
    fn call(
        &self,
        what: &str,
        interface: &str,
        member: &str,
        args: Vec<Value>,
    ) -> Result<std::result::Result<Vec<Value>, RemoteError>> {
        let call = MethodCall {
            destination: DEST,
            path: PATH,
            interface,
            member,
            args,
        };
        self.conn
            .borrow_mut()
            .call(&call, CALL_TIMEOUT)
            .map_err(|e| Error::Other(format!("systemd {what}: {e}")))
    }

    /// A method call that returns one job: its object path.
    fn call_job(
        &self,
        what: &str,
        member: &str,
        args: Vec<Value>,
    ) -> Result<std::result::Result<String, RemoteError>> {
        Ok(match self.call(what, MANAGER, member, args)? {
            Ok(body) => match body.as_slice() {
                [Value::ObjectPath(job)] => Ok(job.clone()),
                other => return Err(unexpected(what, other)),
            },
            Err(e) => Err(e),
        })
    }

    /// A string property of the manager.
    fn property(&self, name: &str) -> Result<String> {
        let args = vec![Value::Str(MANAGER.into()), Value::Str(name.into())];
        let body = self
            .call(name, PROPERTIES, "Get", args)?
            .map_err(|e| remote(name, e))?;
        match body.as_slice() {
            [Value::Variant(v)] => match &**v {
                Value::Str(s) => Ok(s.clone()),
                other => Err(unexpected(name, std::slice::from_ref(other))),
            },
            other => Err(unexpected(name, other)),
        }
    }

    /// The cgroup the manager's units live under (its `ControlGroup`).
    pub fn control_group(&self) -> Result<PathBuf> {
        let cg = self.property("ControlGroup")?;
        Ok(PathBuf::from(if cg.is_empty() { "/" } else { &cg }))
    }

    /// systemd's version (the number before any dot or dash), for the
    /// properties older ones do not know.
    pub fn version(&self) -> u32 {
        self.property("Version")
            .ok()
            .and_then(|v| {
                v.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Starts `unit` in `slice` holding `pid`, delegated, with `props`, and
    /// waits for the start job to finish. A unit that already exists is
    /// the caller's to join through the cgroup files (runc does the same).
    pub fn start(
        &self,
        unit: &UnitPath,
        pid: i32,
        description: &str,
        props: Vec<Property>,
    ) -> Result<StartResult> {
        let mut all: Vec<Property> = vec![
            prop("Description", description.to_string()),
            prop("PIDs", vec![pid as u32]),
        ];
        if unit.unit.ends_with(".scope") {
            all.push(prop("Slice", unit.slice.clone()));
            all.push(prop("Delegate", true));
            // A container's scope does not wait for or pull in anything.
            all.push(prop("DefaultDependencies", false));
        } else {
            // A slice of its own (runc allows it): within the parent slice.
            all.push(prop("Wants", vec![unit.slice.clone()]));
        }
        all.extend(props);
        let what = format!("StartTransientUnit {}", unit.unit);
        let args = vec![
            Value::Str(unit.unit.clone()),
            Value::Str("replace".into()),
            properties_value(all),
            // No auxiliary units: a(sa(sv)), empty.
            Value::Array {
                element: "(sa(sv))".into(),
                items: Vec::new(),
            },
        ];
        let job = match self.call_job(&what, "StartTransientUnit", args)? {
            Ok(job) => job,
            Err(e) if e.name == "org.freedesktop.systemd1.UnitExists" => {
                return Ok(StartResult::Existed)
            }
            Err(e) => return Err(remote(&what, e)),
        };
        let result = self.wait_job(&job)?;
        if result != "done" {
            return Err(Error::Other(format!(
                "systemd could not start {}: job {result}",
                unit.unit
            )));
        }
        Ok(StartResult::Started)
    }

    /// Stops `unit` and waits until it is gone; a unit that no longer
    /// exists (its last process died and systemd collected it) is fine.
    pub fn stop(&self, unit: &str) -> Result<()> {
        let what = format!("StopUnit {unit}");
        let args = vec![Value::Str(unit.into()), Value::Str("replace".into())];
        let job = match self.call_job(&what, "StopUnit", args)? {
            Ok(job) => job,
            Err(e) if e.name == "org.freedesktop.systemd1.NoSuchUnit" => return Ok(()),
            Err(e) => return Err(remote(&what, e)),
        };
        // As runc: a stop job that does not finish in time is a warning;
        // the unit goes once its processes have (delete killed them).
        if let Err(e) = self.wait_job(&job) {
            tracing::warn!("{what}: {e}; continuing");
        }
        // A scope whose processes were killed may be left "failed":
        // forget it, so the name can be used again.
        let _ = self.call(
            &format!("ResetFailedUnit {unit}"),
            MANAGER,
            "ResetFailedUnit",
            vec![Value::Str(unit.into())],
        );
        Ok(())
    }

    /// Changes properties of a running unit (`update`).
    pub fn set_properties(&self, unit: &str, props: Vec<Property>) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let what = format!("SetUnitProperties {unit}");
        let args = vec![
            Value::Str(unit.into()),
            Value::Bool(true),
            properties_value(props),
        ];
        self.call(&what, MANAGER, "SetUnitProperties", args)?
            .map(drop)
            .map_err(|e| remote(&what, e))
    }

    /// Waits for `JobRemoved` of `job`; returns its result ("done", "failed", ...).
    fn wait_job(&self, job: &str) -> Result<String> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut conn = self.conn.borrow_mut();
        loop {
            let Some(signal) = conn
                .next_signal(deadline)
                .map_err(|e| Error::Other(format!("systemd job {job}: {e}")))?
            else {
                return Err(Error::Other(format!(
                    "systemd job {job} did not finish within {}s",
                    JOB_TIMEOUT.as_secs()
                )));
            };
            if signal.interface.as_deref() != Some(MANAGER)
                || signal.member.as_deref() != Some("JobRemoved")
            {
                continue;
            }
            let body = signal
                .body()
                .map_err(|e| Error::Other(format!("systemd job {job}: JobRemoved: {e}")))?;
            match body.as_slice() {
                [Value::U32(_), Value::ObjectPath(path), Value::Str(_), Value::Str(result)] => {
                    if path == job {
                        return Ok(result.clone());
                    }
                }
                other => return Err(unexpected("JobRemoved", other)),
            }
        }
    }
}

/// Properties as systemd's methods take them: `a(sv)`.
fn properties_value(props: Vec<Property>) -> Value {
    Value::Array {
        element: "(sv)".into(),
        items: props
            .into_iter()
            .map(|(name, v)| Value::Struct(vec![Value::Str(name), Value::Variant(Box::new(v))]))
            .collect(),
    }
}

/// systemd's error answer to `what`, as one line.
fn remote(what: &str, e: RemoteError) -> Error {
    Error::Other(format!("systemd {what}: {e}"))
}

/// A reply of another shape than the method's.
fn unexpected(what: &str, body: &[Value]) -> Error {
    let signature: String = body.iter().map(Value::signature).collect();
    Error::Other(format!(
        "systemd {what}: unexpected reply of type {signature:?}"
    ))
}

/// What [`Manager::start`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum StartResult {
    Started,
    /// The unit was there already: join its cgroup through the files.
    Existed,
}

/// A unit property.
pub fn prop(name: &str, value: impl Into<Value>) -> Property {
    (name.to_string(), value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_nest_as_systemd_nests_them() {
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::from("/"));
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            PathBuf::from("/system.slice")
        );
        assert_eq!(
            expand_slice("kubepods-burstable-pod1.slice").unwrap(),
            PathBuf::from("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice")
        );
        for bad in ["a", "a--b.slice", "-a.slice", "a-.slice", "a/b.slice"] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroups_paths() {
        let u = UnitPath::parse(Some("system.slice:ctr:b1"), "x").unwrap();
        assert_eq!(u.unit, "ctr-b1.scope");
        assert_eq!(
            u.cgroup().unwrap(),
            PathBuf::from("/system.slice/ctr-b1.scope")
        );
        let u = UnitPath::parse(
            Some("kubepods-besteffort-pod9.slice:cri-containerd:abc"),
            "x",
        )
        .unwrap();
        assert_eq!(
            u.cgroup().unwrap(),
            PathBuf::from("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/cri-containerd-abc.scope")
        );
        let u = UnitPath::parse(Some(":berth:c1"), "x").unwrap();
        assert_eq!(u.slice, "system.slice");
        let u = UnitPath::parse(None, "c2").unwrap();
        assert_eq!(u.unit, "berth-c2.scope");
        assert!(UnitPath::parse(Some("/plain/path"), "x").is_err());
        assert!(UnitPath::parse(Some("a:b"), "x").is_err());
    }
}
