//! `berth-img` is not built yet; see the issue tracker.

fn main() {
    eprintln!("berth-img: not built yet");
    std::process::exit(1);
}
