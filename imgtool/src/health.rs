//! HEALTHCHECK: docker's `Healthcheck` (from the image config, which
//! `build` writes as docker does, and the `--health-*` flags), and the
//! health state its probes lead to, as docker's health monitor decides it.
//! The supervisor ([`crate::supervisor`]) runs the probes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock;
use crate::error::{Error, Result};

/// docker's defaults (moby `daemon/health.go`).
pub const DEFAULT_INTERVAL: i64 = 30_000_000_000;
pub const DEFAULT_TIMEOUT: i64 = 30_000_000_000;
pub const DEFAULT_START_INTERVAL: i64 = 5_000_000_000;
pub const DEFAULT_RETRIES: i64 = 3;
/// docker keeps the last five results, and 4 KiB of each one's output.
const MAX_LOG_ENTRIES: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// docker's `Healthcheck` (image config and container `Config`):
/// durations in nanoseconds, 0 meaning the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["CMD", args...]`, `["CMD-SHELL", command]` or `["NONE"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The `--health-*` flags of `run`, as given.
#[derive(Clone, Debug, Default)]
pub struct HealthFlags {
    /// The whole test as compose and docker's API give it (`CMD`,
    /// `CMD-SHELL`, `NONE` first); `cmd` is the flag's shell form.
    pub test: Option<Vec<String>>,
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<i64>,
    pub none: bool,
}

impl HealthConfig {
    /// The command to exec in the container, or None for `NONE` (and an
    /// empty test).
    pub fn command(&self) -> Option<Vec<String>> {
        match self.test.first().map(String::as_str) {
            Some("CMD") if self.test.len() > 1 => Some(self.test[1..].to_vec()),
            Some("CMD-SHELL") if self.test.len() > 1 => Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                self.test[1..].join(" "),
            ]),
            _ => None,
        }
    }

    pub fn interval(&self) -> i64 {
        positive_or(self.interval, DEFAULT_INTERVAL)
    }

    pub fn timeout(&self) -> i64 {
        positive_or(self.timeout, DEFAULT_TIMEOUT)
    }

    pub fn start_interval(&self) -> i64 {
        positive_or(self.start_interval, DEFAULT_START_INTERVAL)
    }

    pub fn retries(&self) -> i64 {
        positive_or(self.retries, DEFAULT_RETRIES)
    }
}

fn positive_or(v: i64, default: i64) -> i64 {
    if v > 0 {
        v
    } else {
        default
    }
}

/// A `--health-*` duration: a Go duration, 0 or at least 1ms.
fn flag_duration(flag: &str, v: &Option<String>) -> Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    let bad = |why: &str| Error::invalid(format!("--{flag}"), format!("{s:?}: {why}"));
    let n = clock::parse_go_duration(s).ok_or_else(|| bad("want a duration such as 30s"))?;
    if n < 0 {
        return Err(bad("cannot be negative"));
    }
    if n != 0 && n < 1_000_000 {
        return Err(bad("cannot be less than 1ms"));
    }
    Ok(Some(n))
}

/// The container's health check: the image's `Healthcheck` (`image`, from
/// its config), each field replaced by the flag that sets it, as docker
/// merges them. None when there is no check (or `--no-healthcheck`, or a
/// test of `NONE`).
pub fn resolve(image: Option<&Value>, flags: &HealthFlags) -> Result<Option<HealthConfig>> {
    let any_flag = flags.test.is_some()
        || flags.cmd.is_some()
        || flags.interval.is_some()
        || flags.timeout.is_some()
        || flags.start_period.is_some()
        || flags.start_interval.is_some()
        || flags.retries.is_some();
    if flags.none {
        if any_flag {
            return Err(Error::invalid(
                "--no-healthcheck",
                "conflicts with --health-* options",
            ));
        }
        return Ok(None);
    }
    let mut h: HealthConfig = image
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if let Some(test) = &flags.test {
        h.test = test.clone();
    }
    if let Some(cmd) = &flags.cmd {
        h.test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    for (flag, value, field) in [
        ("health-interval", &flags.interval, &mut h.interval),
        ("health-timeout", &flags.timeout, &mut h.timeout),
        (
            "health-start-period",
            &flags.start_period,
            &mut h.start_period,
        ),
        (
            "health-start-interval",
            &flags.start_interval,
            &mut h.start_interval,
        ),
    ] {
        if let Some(n) = flag_duration(flag, value)? {
            *field = n;
        }
    }
    if let Some(r) = flags.retries {
        if r < 0 {
            return Err(Error::invalid(
                "--health-retries",
                format!("{r}: cannot be negative"),
            ));
        }
        h.retries = r;
    }
    Ok(h.command().is_some().then_some(h))
}

/// One probe's result, as docker's `State.Health.Log` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// docker's `State.Health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

impl Health {
    /// The state of a container just started: `starting`, no streak, the
    /// log of earlier runs kept.
    pub fn starting(previous: Option<&Health>) -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: previous.map(|h| h.log.clone()).unwrap_or_default(),
        }
    }

    /// Applies one probe's result as docker does: success makes the
    /// container healthy; a failure adds to the streak (not while the
    /// container is still starting inside its start period), and
    /// `retries` failures in a row make it unhealthy.
    pub fn record(&mut self, config: &HealthConfig, probe: Probe, since_start: i64) {
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !(self.status == "starting" && since_start < config.start_period) {
            self.failing_streak += 1;
            if i64::from(self.failing_streak) >= config.retries() {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        if self.log.len() > MAX_LOG_ENTRIES {
            self.log.remove(0);
        }
    }

    /// What `ps` shows after "Up 3 seconds": `(healthy)`,
    /// `(health: starting)`.
    pub fn summary(&self) -> String {
        if self.status == "starting" {
            "health: starting".into()
        } else {
            self.status.clone()
        }
    }
}

/// A probe's output as docker keeps it: the first 4 KiB.
pub fn clip_output(out: &[u8]) -> String {
    String::from_utf8_lossy(&out[..out.len().min(MAX_OUTPUT)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(code: i32) -> Probe {
        Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn flags_override_the_image_field_by_field() {
        let image = json!({"Test": ["CMD", "true"], "Interval": 5_000_000_000i64, "Retries": 2});
        let flags = HealthFlags {
            interval: Some("1s".into()),
            ..Default::default()
        };
        let h = resolve(Some(&image), &flags).unwrap().unwrap();
        assert_eq!(h.test, ["CMD", "true"]);
        assert_eq!((h.interval, h.retries), (1_000_000_000, 2));
        assert_eq!(h.command().unwrap(), ["true"]);
        let flags = HealthFlags {
            cmd: Some("exit 1".into()),
            ..Default::default()
        };
        let h = resolve(None, &flags).unwrap().unwrap();
        assert_eq!(h.command().unwrap(), ["/bin/sh", "-c", "exit 1"]);
        let none = json!({"Test": ["NONE"]});
        assert!(resolve(Some(&none), &HealthFlags::default())
            .unwrap()
            .is_none());
        let off = HealthFlags {
            none: true,
            ..Default::default()
        };
        assert!(resolve(Some(&image), &off).unwrap().is_none());
        let both = HealthFlags {
            none: true,
            retries: Some(1),
            ..Default::default()
        };
        assert!(resolve(None, &both)
            .unwrap_err()
            .to_string()
            .contains("conflicts with --health-* options"));
        let bad = HealthFlags {
            cmd: Some("true".into()),
            interval: Some("5".into()),
            ..Default::default()
        };
        assert!(resolve(None, &bad)
            .unwrap_err()
            .to_string()
            .starts_with("invalid --health-interval: \"5\""));
    }

    #[test]
    fn streaks_and_the_start_period() {
        let config = HealthConfig {
            test: vec!["CMD".into(), "x".into()],
            retries: 2,
            start_period: 10,
            ..Default::default()
        };
        let mut h = Health::starting(None);
        h.record(&config, probe(1), 5);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(&config, probe(1), 20);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(&config, probe(1), 30);
        assert_eq!(h.status, "unhealthy");
        h.record(&config, probe(0), 40);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(&config, probe(0), 50);
        }
        assert_eq!(h.log.len(), 5);
        assert_eq!(h.summary(), "healthy");
        assert_eq!(Health::starting(Some(&h)).summary(), "health: starting");
    }
}
