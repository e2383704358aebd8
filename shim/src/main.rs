//! `containerd-shim-berth-v2`: containerd's shim v2 for berth. The protocol
//! (ttrpc Task service, event publishing, reaping) comes from the
//! containerd-shim crate; this crate drives `berth` through its runc
//! command line.

mod metrics_v2;
mod oom;
mod service;
mod supervise;

use containerd_shim as shim;

/// containerd 1.6 dials the trimmed stdout of `start` as a plain address
/// (the crate answers with containerd 2.x's JSON), so `start` is ours.
/// Containers of one pod (same io.kubernetes.cri.sandbox-id) share a shim.
fn start(flags: &shim::Flags) -> Result<(), shim::Error> {
    let grouping = std::fs::read_to_string("config.json")
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|c| {
            c["annotations"]["io.kubernetes.cri.sandbox-id"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| flags.id.clone());
    let opts = shim::StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
    };
    let (_pid, address) = shim::spawn(opts, &grouping, Vec::new())?;
    print!("{address}");
    Ok(())
}

fn main() {
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
