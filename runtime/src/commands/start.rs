//! `berth start`.

use super::Global;
use crate::container::{self, Container};
use crate::error::Result;

pub fn start(g: &Global, id: &str) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    container::start(&c)
}
