//! `berth-conformance` is not built yet; see the issue tracker.

fn main() {
    eprintln!("berth-conformance: not built yet");
    std::process::exit(1);
}
