//! `berth state`: runtime.md "State" plus runc's extra fields.

use std::collections::HashMap;

use serde::Serialize;

use super::Global;
use crate::container::{status_of, Container};
use crate::error::{Error, Result};
use crate::state::{State, Status};

/// The JSON runc prints for `state` and `list --format json`.
#[derive(Serialize)]
pub struct StateView {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    pub owner: String,
}

impl StateView {
    pub fn new(st: &State, status: Status) -> StateView {
        StateView {
            oci_version: st.oci_version().to_string(),
            id: st.id.clone(),
            pid: if status == Status::Stopped { 0 } else { st.pid },
            status: status.to_string(),
            bundle: st.bundle.display().to_string(),
            rootfs: st.rootfs.display().to_string(),
            created: st.created.clone(),
            annotations: st.annotations(),
            owner: st.owner.clone(),
        }
    }
}

pub fn state(g: &Global, id: &str) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    let view = StateView::new(&c.state, status_of(&c.dir.path, &c.state, &c.layout));
    let json = serde_json::to_string_pretty(&view).map_err(|e| Error::Other(e.to_string()))?;
    crate::outln!("{json}");
    Ok(())
}
