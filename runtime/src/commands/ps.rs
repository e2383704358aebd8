//! `berth ps`: the processes of a container, as runc shows them: `ps`'s own
//! table filtered to the container's PIDs, or the PIDs as JSON.

use std::process::Command;

use super::Global;
use crate::container::Container;
use crate::error::{Error, Result};

pub fn ps(g: &Global, id: &str, json: bool, ps_args: &[String]) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    let pids = c.pids();
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string(&pids).map_err(|e| Error::Other(e.to_string()))?
        );
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::sys("run ps", e))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Other("ps: no PID column in its output".into()))?;
    crate::outln!("{header}");
    for line in lines {
        let pid: Option<i32> = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            crate::outln!("{line}");
        }
    }
    Ok(())
}
