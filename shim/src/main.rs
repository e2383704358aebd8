//! `containerd-shim-berth-v2`: containerd's shim v2 for berth. The protocol
//! (ttrpc Task service, event publishing, reaping) comes from the
//! containerd-shim crate; this crate drives `berth` through its runc
//! command line.

mod metrics_v2;
mod oom;
mod service;
mod supervise;
mod trim;

use containerd_shim as shim;

/// containerd 1.6 dials the trimmed stdout of `start` as a plain address
/// (the crate answers with containerd 2.x's JSON), so `start` is ours.
/// Containers of one pod (same io.kubernetes.cri.sandbox-id) share a shim.
fn start(flags: &shim::Flags) -> Result<(), shim::Error> {
    let grouping = service::grouping(&flags.id);
    let opts = shim::StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
    };
    let (_pid, address) = shim::spawn(opts, &grouping, Vec::new())?;
    // The bundle's `address` file (the cwd is the bundle), as the runc shim
    // writes it for every container: containerd reconnects to running
    // shims through it after a restart, and treats a bundle without one as
    // a dead shim (it kills and deletes the container). The crate writes it
    // only when the pod's shim already runs.
    std::fs::write("address", &address)
        .map_err(|e| shim::Error::Other(format!("write the bundle's address file: {e}")))?;
    print!("{address}");
    Ok(())
}

fn main() {
    // One malloc arena: the shim's threads mostly sleep, and an arena per
    // thread costs resident memory for no speed it needs.
    // SAFETY: mallopt with an integer option before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("supervise") {
        std::process::exit(supervise::main(&args[1..]));
    }
    if let Ok(flags) = shim::parse(&args) {
        if flags.action == "start" {
            if let Err(e) = start(&flags) {
                eprintln!("containerd-shim-berth-v2: {e}");
                std::process::exit(1);
            }
            return;
        }
    }
    shim::run::<service::Service>("io.containerd.berth.v2", None)
}
