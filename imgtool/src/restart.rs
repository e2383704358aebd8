//! `--restart`: docker's restart policies and its restart manager's
//! decision and back-off, applied by the supervisor
//! ([`crate::supervisor`]) each time a container's process exits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// docker's `HostConfig.RestartPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no`, `always`, `on-failure` or `unless-stopped`.
    pub name: String,
    /// For `on-failure`: at most this many restarts (0: no limit).
    pub maximum_retry_count: u32,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;

    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`, in docker's
    /// words when wrong.
    fn from_str(s: &str) -> Result<RestartPolicy> {
        let bad = |why: String| Error::invalid("--restart", why);
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let maximum_retry_count = match count {
            None => 0,
            Some(c) => {
                let n: i64 = c
                    .parse()
                    .map_err(|_| bad(format!("maximum retry count must be an integer: {c:?}")))?;
                if n < 0 {
                    return Err(bad("maximum retry count cannot be negative".into()));
                }
                n.min(i64::from(u32::MAX)) as u32
            }
        };
        match name {
            "" | "no" | "always" | "unless-stopped" if count.is_some() => Err(bad(format!(
                "maximum retry count cannot be used with restart policy '{name}'"
            ))),
            "" | "no" => Ok(RestartPolicy::none()),
            "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
                name: name.into(),
                maximum_retry_count,
            }),
            _ => Err(bad(format!("invalid restart policy {name:?}"))),
        }
    }
}

impl RestartPolicy {
    /// `no`.
    pub fn none() -> RestartPolicy {
        RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        }
    }

    pub fn is_none(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }

    /// Whether a container that exited with `exit_code`, after
    /// `restart_count` restarts so far, is started again. Nothing is
    /// restarted that `stop` or `kill` ended (docker's
    /// `HasBeenManuallyStopped`).
    pub fn should_restart(
        &self,
        exit_code: i32,
        stopped_by_user: bool,
        restart_count: u32,
    ) -> bool {
        if stopped_by_user {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                exit_code != 0
                    && (self.maximum_retry_count == 0 || restart_count < self.maximum_retry_count)
            }
            _ => false,
        }
    }
}

/// docker's restart delay: 100 ms, doubled on each restart up to a
/// minute, and back to 100 ms once a run lasted 10 seconds.
#[derive(Debug, Default)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);
    const RESET_AFTER: Duration = Duration::from_secs(10);

    /// The wait before the next start, after a run that lasted `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= Self::RESET_AFTER || self.delay.is_zero() {
            self.delay = Self::FIRST;
        } else {
            self.delay = (self.delay * 2).min(Self::MAX);
        }
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RestartPolicy {
        s.parse().unwrap()
    }

    #[test]
    fn policies_parse_as_docker_spells_them() {
        assert!(p("no").is_none());
        assert_eq!(p("on-failure:2").maximum_retry_count, 2);
        assert_eq!(p("on-failure").maximum_retry_count, 0);
        assert_eq!(p("unless-stopped").name, "unless-stopped");
        for (bad, want) in [
            ("sometimes", "invalid restart policy"),
            ("always:3", "cannot be used with restart policy 'always'"),
            ("on-failure:x", "must be an integer"),
            ("on-failure:-1", "cannot be negative"),
        ] {
            let e = bad.parse::<RestartPolicy>().unwrap_err().to_string();
            assert!(
                e.starts_with("invalid --restart: ") && e.contains(want),
                "{e}"
            );
        }
    }

    #[test]
    fn decisions() {
        assert!(!p("no").should_restart(1, false, 0));
        assert!(p("always").should_restart(0, false, 10));
        assert!(!p("always").should_restart(0, true, 0));
        assert!(!p("unless-stopped").should_restart(1, true, 0));
        let f = p("on-failure:2");
        assert!(!f.should_restart(0, false, 0));
        assert!(f.should_restart(1, false, 1));
        assert!(!f.should_restart(1, false, 2));
        assert!(p("on-failure").should_restart(3, false, 100));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        assert_eq!(b.next(quick), Duration::from_millis(100));
        assert_eq!(b.next(quick), Duration::from_millis(200));
        assert_eq!(b.next(quick), Duration::from_millis(400));
        assert_eq!(b.next(Duration::from_secs(11)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(quick);
        }
        assert_eq!(b.next(quick), Duration::from_secs(60));
    }
}
