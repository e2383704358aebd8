//! `berth events`: runc's event stream for a container: stats every
//! interval (or once with --stats) and an `oom` event whenever the OOM
//! killer acts in its cgroup. Ends when the container stops.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Global;
use crate::container::{status_of, Container};
use crate::error::{Error, Result};
use crate::state::Status;

/// Parses Go-style durations as runc's --interval takes them: "5s", "500ms", "1m".
pub fn parse_interval(s: &str) -> Result<Duration> {
    let bad = || Error::Config(format!("--interval: invalid duration {s:?}"));
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn events(g: &Global, id: &str, stats_once: bool, interval: Duration) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::State(format!("container {id} is not running")));
    }
    let cgroup = c.cgroup();
    let (layout, dir, state) = (c.layout.clone(), c.dir.path.clone(), c.state.clone());
    // The lock is not held while streaming.
    drop(c.dir);
    let emit = |kind: &str, data: serde_json::Value| {
        let mut ev = json!({"type": kind, "id": id});
        if !data.is_null() {
            ev["data"] = data;
        }
        crate::outln!("{ev}");
    };
    if stats_once {
        emit("stats", cgroup.stats(&layout));
        return Ok(());
    }
    let mut ooms = cgroup.oom_kills(&layout);
    let mut next_stats = Instant::now();
    loop {
        if status_of(&dir, &state, &layout) == Status::Stopped {
            return Ok(());
        }
        let now_ooms = cgroup.oom_kills(&layout);
        if now_ooms > ooms {
            ooms = now_ooms;
            emit("oom", serde_json::Value::Null);
        }
        if Instant::now() >= next_stats {
            emit("stats", cgroup.stats(&layout));
            next_stats = Instant::now() + interval;
        }
        std::thread::sleep(interval.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
