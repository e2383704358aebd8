//! Logging in runc's formats, because callers parse them: containerd reads
//! the last `{"level":"error","msg":...}` line of `--log` (with
//! `--log-format json`) to tell its user why the runtime failed.
//!
//! A minimal `tracing` subscriber: no spans, one line per event, written
//! straight to the file (no background thread, no buffering to lose).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

enum Sink {
    File(Mutex<File>),
    Stderr,
}

struct Logger {
    sink: Sink,
    format: Format,
    max: Level,
}

/// The `--log` file's fd, which a container's init keeps (and only that,
/// besides its own channels) so its warnings still reach the log.
static LOG_FD: std::sync::OnceLock<std::os::fd::RawFd> = std::sync::OnceLock::new();

pub fn log_fd() -> Option<std::os::fd::RawFd> {
    LOG_FD.get().copied()
}

/// Installs the logger; returns whether log lines go to stderr (then the
/// final error is not printed a second time).
pub fn init(log: Option<&Path>, format: Format, debug: bool) -> std::io::Result<bool> {
    let sink = match log {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            let _ = LOG_FD.set(std::os::fd::AsRawFd::as_raw_fd(&f));
            Sink::File(Mutex::new(f))
        }
        None => Sink::Stderr,
    };
    let to_stderr = matches!(sink, Sink::Stderr);
    let logger = Logger {
        sink,
        format,
        max: if debug { Level::DEBUG } else { Level::WARN },
    };
    let _ = tracing::subscriber::set_global_default(logger);
    Ok(to_stderr)
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl tracing::Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &self.max
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let level = level_name(event.metadata().level());
        let time = crate::state::now_rfc3339();
        let line = match self.format {
            Format::Json => format!(
                "{}\n",
                serde_json::json!({"level": level, "msg": msg.0, "time": time})
            ),
            Format::Text => format!("time=\"{time}\" level={level} msg={:?}\n", msg.0),
        };
        match &self.sink {
            Sink::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
