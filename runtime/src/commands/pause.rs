//! `berth pause` and `berth resume` (runtime.md leaves these to runc's
//! contract: the cgroup freezer).

use super::Global;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::state::Status;

pub fn pause(g: &Global, id: &str) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    match c.status() {
        Status::Running | Status::Created => c.cgroup().freeze(&c.layout, true),
        s => Err(Error::State(format!("container not running: {s}"))),
    }
}

pub fn resume(g: &Global, id: &str) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    match c.status() {
        Status::Paused => c.cgroup().freeze(&c.layout, false),
        _ => Err(Error::State("container not paused".into())),
    }
}
