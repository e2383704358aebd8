//! `berth list`.

use super::state::StateView;
use super::Global;
use crate::cgroups::Layout;
use crate::container::status_of;
use crate::error::{Error, Result};
use crate::state::read_state;

pub fn list(g: &Global, quiet: bool, json: bool) -> Result<()> {
    let layout = Layout::detect()?;
    let mut views = Vec::new();
    let entries = match std::fs::read_dir(&g.root) {
        Ok(e) => e.flatten().collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::path("read", &g.root, e)),
    };
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        // Skip what is not a container, or vanished, or is mid-create.
        let Ok(Some(st)) = read_state(&dir, &name) else {
            continue;
        };
        views.push(StateView::new(&st, status_of(&dir, &st, &layout)));
    }
    views.sort_by(|a, b| a.id.cmp(&b.id));
    if quiet {
        for v in &views {
            crate::outln!("{}", v.id);
        }
        return Ok(());
    }
    if json {
        // runc prints `null` for no containers; containerd accepts both.
        let out = if views.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&views).map_err(|e| Error::Other(e.to_string()))?
        };
        crate::outln!("{out}");
        return Ok(());
    }
    let rows: Vec<[String; 6]> = views
        .iter()
        .map(|v| {
            [
                v.id.clone(),
                v.pid.to_string(),
                v.status.clone(),
                v.bundle.clone(),
                v.created.clone(),
                v.owner.clone(),
            ]
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i] + 4));
            }
        }
        crate::outln!("{line}");
    }
    Ok(())
}
