//! `berth create`.

use super::Global;
use crate::container::{self, CreateOptions};
use crate::error::Result;

pub fn create(g: &Global, id: &str, opts: &CreateOptions) -> Result<()> {
    container::create(&g.root, id, opts).map(drop)
}
