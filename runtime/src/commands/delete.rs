//! `berth delete`.

use super::Global;
use crate::container::{self, Container};
use crate::error::{Error, Result};

pub fn delete(g: &Global, id: &str, force: bool) -> Result<()> {
    match Container::load(&g.root, id) {
        Ok(c) => container::delete(c, force),
        // A create killed before it wrote any state: nothing runs, remove it.
        Err(Error::NotFound(_)) if force => remove_leftover(g, id),
        Err(e) => Err(e),
    }
}

fn remove_leftover(g: &Global, id: &str) -> Result<()> {
    crate::state::validate_id(id)?;
    match crate::state::ContainerDir::open(&g.root, id) {
        Ok(dir) => dir.remove(),
        Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
