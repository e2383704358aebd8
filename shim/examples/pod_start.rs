//! Pod start latency through containerd's CRI, for `hack/bench`: what the
//! kubelet waits for when it starts a pod. Each sample is RunPodSandbox
//! (the pause container) → CreateContainer → StartContainer until
//! ContainerStatus says RUNNING; the pod is then stopped and removed outside
//! the timing. The handlers take turns, one pod each per round, so none of
//! them inherits another's teardown (see hack/interleave). Prints one JSON
//! line per handler with its samples in milliseconds.
//!
//! `pod_start SOCKET HANDLER[,HANDLER...] RUNS IMAGE CGROUP_PARENT`: the
//! containerd socket, runtime handlers its CRI config names, the number of
//! rounds, an image in the k8s.io namespace to run `sleep`, and the pods'
//! cgroup parent (a cgroupfs path, as the kubelet's cgroupfs driver gives).

use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tonic::transport::{Endpoint, Uri};

type Client = cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, handlers, runs, image, parent] = args.as_slice() else {
        eprintln!("usage: pod_start SOCKET HANDLER[,HANDLER...] RUNS IMAGE CGROUP_PARENT");
        std::process::exit(2);
    };
    let handlers: Vec<&str> = handlers.split(',').collect();
    let runs: usize = runs.parse().expect("RUNS: a number");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let samples = rt.block_on(async {
        let path = socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap_or_else(|e| panic!("connect to {socket}: {e}"));
        let mut client = Client::new(channel);
        let mut samples = vec![Vec::with_capacity(runs); handlers.len()];
        for n in 0..runs {
            for (handler, samples) in handlers.iter().zip(&mut samples) {
                let t0 = Instant::now();
                let pod = start_pod(&mut client, handler, image, parent, n).await;
                samples.push(t0.elapsed().as_secs_f64() * 1000.0);
                remove_pod(&mut client, &pod).await;
            }
        }
        samples
    });
    for (handler, samples) in handlers.iter().zip(samples) {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({
                "handler": handler,
                "median_ms": sorted[sorted.len() / 2],
                "samples_ms": samples,
            })
        );
    }
}

/// Starts pod number `n` with one `sleep` container; returns the pod's id
/// once the container is running.
async fn start_pod(c: &mut Client, handler: &str, image: &str, parent: &str, n: usize) -> String {
    let name = format!("bench-{handler}-{n}");
    let meta = cri::PodSandboxMetadata {
        name: name.clone(),
        uid: format!("{name}-{}", std::process::id()),
        namespace: "bench".into(),
        attempt: 0,
    };
    let host_network = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ..Default::default()
    };
    let config = cri::PodSandboxConfig {
        metadata: Some(meta),
        log_directory: std::env::temp_dir()
            .join(&name)
            .to_string_lossy()
            .into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{parent}/pod{name}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(host_network),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = c
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("RunPodSandbox ({handler}): {}", s.message()))
        .into_inner()
        .pod_sandbox_id;
    let container = c
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "sleep".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "1000".into()],
                log_path: "sleep.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .unwrap_or_else(|s| panic!("CreateContainer ({handler}): {}", s.message()))
        .into_inner()
        .container_id;
    c.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .unwrap_or_else(|s| panic!("StartContainer ({handler}): {}", s.message()));
    loop {
        let state = c
            .container_status(cri::ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|s| panic!("ContainerStatus ({handler}): {}", s.message()))
            .into_inner()
            .status
            .map(|s| s.state);
        if state == Some(cri::ContainerState::ContainerRunning as i32) {
            return pod;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// StopPodSandbox (its containers are killed) and RemovePodSandbox.
async fn remove_pod(c: &mut Client, pod: &str) {
    c.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .unwrap_or_else(|s| panic!("StopPodSandbox: {}", s.message()));
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .unwrap_or_else(|s| panic!("RemovePodSandbox: {}", s.message()));
}
