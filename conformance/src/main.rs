//! `berth-conformance --runtime PATH`: grades a runc-compatible runtime.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use berth_conformance::{counts, run_suite, to_json, Options, Status};

#[derive(Parser)]
#[command(name = "berth-conformance", about = "OCI runtime conformance suite")]
struct Cli {
    /// The runtime binary to grade (berth, runc, crun, ...).
    #[arg(long)]
    runtime: PathBuf,
    /// Only cases whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Cases run at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Keep each case's bundle and state directory.
    #[arg(long)]
    keep: bool,
    /// Seconds one runtime call may take before it is killed.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Tap,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = std::path::absolute(&cli.runtime)?;
    if !runtime.exists() {
        anyhow::bail!("--runtime {}: no such file", runtime.display());
    }
    let results = run_suite(&Options {
        runtime: runtime.clone(),
        filter: cli.filter,
        jobs: cli.jobs,
        keep: cli.keep,
        timeout: Duration::from_secs(cli.timeout),
    });
    let (passed, failed, skipped) = counts(&results);
    match cli.format {
        Format::Json => println!("{}", to_json(&runtime, &results)),
        Format::Tap => {
            println!("TAP version 13\n1..{}", results.len());
            for (i, r) in results.iter().enumerate() {
                match r.status {
                    Status::Pass => println!("ok {} - {}", i + 1, r.name),
                    Status::Skip => println!("ok {} - {} # SKIP {}", i + 1, r.name, r.detail),
                    Status::Fail => println!("not ok {} - {}\n  # {}", i + 1, r.name, r.detail),
                }
            }
        }
        Format::Table => {
            let width = results.iter().map(|r| r.name.len()).max().unwrap_or(4);
            for r in &results {
                let detail = if r.detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", r.detail.lines().next().unwrap_or(""))
                };
                println!(
                    "{:<width$}  {:<4}  {:>5.2}s{detail}",
                    r.name,
                    r.status.as_str(),
                    r.seconds
                );
            }
            println!("{passed} passed, {failed} failed, {skipped} skipped");
        }
    }
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
