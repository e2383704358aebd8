//! `containerd-shim-berth-v2` is not built yet; see the issue tracker.

fn main() {
    eprintln!("containerd-shim-berth-v2: not built yet");
    std::process::exit(1);
}
