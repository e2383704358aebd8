//! `build`: Dockerfiles into images without a daemon.
//!
//! Each stage is a list of layers plus an image config. Steps that change
//! files (RUN, COPY, ADD) mount the stage as an overlay — the store's layer
//! directories as lowers, a fresh upper mounted with `redirect_dir=off,
//! metacopy=off` so it holds a plain diff — act on it (RUN through `berth`),
//! and turn the upper directory into the next layer ([`diff`]). Every other
//! instruction only edits the config. A step whose parent state,
//! instruction, arguments and (for COPY/ADD) source content are unchanged
//! reuses the layer it made last time ([`cache`]).
//!
//! The whole build runs in a private mount namespace: if it is killed, the
//! kernel drops its mounts, and the store only ever gains complete,
//! verified blobs.

pub mod copy;
pub mod diff;
pub mod dockerfile;
pub mod dockerignore;
pub mod run;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bundle::{self, Network};
use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::image::{Compression, Descriptor, History, ImageConfig, Platform, RootFs, RunConfig};
use crate::import::{created_time, store_image};
use crate::inroot::Root;
use crate::overlay::{self, Overlay};
use crate::pull::{self, unpack_blob};
use crate::reference::Reference;
use crate::store::{remove_tree, unique_name, ImageRecord, Store};
use crate::users;
use dockerfile::{Command, CopyArgs, Dockerfile, Instruction, Kind};

/// Build arguments docker accepts without an ARG declaration.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub struct BuildOptions {
    pub context: PathBuf,
    /// Defaults to CONTEXT/Dockerfile.
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub platform: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub network: Network,
    pub runtime: Option<PathBuf>,
    pub compression: Compression,
    pub quiet: bool,
}

/// One stage as it is being built.
#[derive(Clone)]
struct State {
    layers: Vec<(Descriptor, Digest)>,
    config: ImageConfig,
    args: BTreeMap<String, String>,
    shell: Vec<String>,
    /// CMD came from the base image (ENTRYPOINT then resets it).
    cmd_inherited: bool,
}

impl State {
    fn scratch() -> State {
        let p = Platform::host();
        State {
            layers: Vec::new(),
            config: ImageConfig {
                architecture: p.architecture,
                os: p.os,
                variant: p.variant,
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: Vec::new(),
                },
                ..Default::default()
            },
            args: BTreeMap::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_inherited: false,
        }
    }

    /// What a cache key builds on: the layers and the run config.
    fn id(&self) -> Digest {
        let v = json!({ "layers": self.config.rootfs.diff_ids, "config": self.config.config });
        Digest::sha256_of(&serde_json::to_vec(&v).expect("state serializes"))
    }

    fn env(&self) -> Vec<String> {
        self.config.config.env.clone().unwrap_or_default()
    }

    fn env_get(&self, name: &str) -> Option<String> {
        self.env().iter().find_map(|e| {
            let (k, v) = e.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let kv = format!("{k}={v}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(k)) {
            Some(slot) => *slot = kv,
            None => env.push(kv),
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// Records a step. Steps that make no layer take the time of the state
    /// they describe (the last layer's), so a rebuild served from the cache
    /// gives the same image ID.
    fn history(&mut self, created_by: &str, empty_layer: bool, created: Option<String>) {
        let created = created
            .or_else(|| self.config.history.last().and_then(|h| h.created.clone()))
            .unwrap_or_else(created_time);
        self.config.history.push(History {
            created: Some(created),
            created_by: Some(created_by.to_string()),
            comment: Some("berth-img build".into()),
            empty_layer,
            ..Default::default()
        });
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    layer: Descriptor,
    diff_id: Digest,
    /// When the layer was made: the history time a cached step reuses.
    #[serde(default)]
    created: Option<String>,
}

/// A `RUN --mount`: what the step's cache key records of it, the runtime
/// mount, and the stage or image mounted for `from=` (unmounted on drop).
struct RunMount {
    key: Value,
    spec: Value,
    _from: Option<Mounted>,
}

/// A stage's result, shared by the threads that build stages side by side.
enum Slot {
    Pending,
    Built(Box<State>),
    Failed,
}

/// Shared by every stage being built: stages that do not depend on each
/// other build on their own threads, each holding its stage's slot while
/// it works so that a stage needed twice is built once. A stage only waits
/// for stages before it, so the waits cannot form a cycle.
struct Builder<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    df: Dockerfile,
    context: PathBuf,
    ignore: Option<dockerignore::DockerIgnore>,
    runtime: PathBuf,
    global_args: BTreeMap<String, String>,
    consumed: Mutex<BTreeSet<String>>,
    built: Vec<Mutex<Slot>>,
    /// The last step number handed out; held while a step's line is
    /// printed so that the numbers appear in order.
    step: Mutex<usize>,
    /// Set when a stage fails: the others stop at their next step.
    failed: AtomicBool,
    /// The error that failed the build; every stage after it only reports
    /// [`Error::Cancelled`].
    first_error: Mutex<Option<Error>>,
    work: PathBuf,
}

/// Joins `p` onto the working directory unless it is absolute, keeping a
/// trailing slash (it means "directory").
fn join_workdir(workdir: &str, p: &str) -> String {
    if p.starts_with('/') {
        return p.to_string();
    }
    let base = workdir.trim_end_matches('/');
    format!("{base}/{p}")
}

fn exec_form(shell: &[String], c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// Go duration strings ("1m30s", "500ms") as nanoseconds.
fn go_duration(s: &str) -> Result<i64> {
    let bad = || Error::invalid("duration", format!("{s:?}"));
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

/// A mounted stage rootfs; unmounted on drop.
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
    fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let merged = self.merged();
        if overlay::unmount(&merged).is_err() {
            let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        }
        remove_tree(&self.dir);
    }
}

/// Moves this process into a mount namespace of its own, with nothing
/// propagating back, so that a killed build leaves no mounts behind. Must
/// run before any thread is started.
fn private_mount_namespace() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context(|| "unshare mount namespace".into())?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context(|| "make / private".into())
}

/// Runs the build and stores the image under every tag.
pub fn build(store: &Store, opts: &BuildOptions) -> Result<(ImageRecord, Vec<String>)> {
    private_mount_namespace()?;
    let context = fs::canonicalize(&opts.context)
        .map_err(|e| Error::Path(opts.context.clone(), format!("build context: {e}")))?;
    let df_path = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let text =
        fs::read_to_string(&df_path).map_err(|e| Error::Path(df_path.clone(), e.to_string()))?;
    let df = dockerfile::parse(&text).map_err(|e| Error::Other(e.to_string()))?;
    if let Some(p) = &opts.platform {
        let want = Platform::parse(p)?;
        if !Platform::host().matches(&want) {
            return Err(Error::invalid(
                "--platform",
                format!(
                    "{p}: only the host platform {} can be built here",
                    Platform::host()
                ),
            ));
        }
    }
    // A Dockerfile-specific ignore file wins over the context's.
    let ignore_file = [
        df_path.with_file_name(format!(
            "{}.dockerignore",
            df_path.file_name().unwrap_or_default().to_string_lossy()
        )),
        context.join(".dockerignore"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let ignore = match ignore_file {
        Some(p) => Some(
            dockerignore::DockerIgnore::parse(
                &fs::read_to_string(&p).map_err(|e| Error::Path(p.clone(), e.to_string()))?,
            )
            .map_err(|e| Error::Path(p.clone(), e))?,
        ),
        None => None,
    };
    let runtime = run::find_runtime(opts.runtime.as_deref())?;
    run::reap_stale(&runtime, store);
    let work = store.tmp_dir().join(unique_name("build-"));
    fs::create_dir_all(&work).context(|| format!("create {}", work.display()))?;
    let stages = df.stages.len();
    let b = Builder {
        store,
        opts,
        context,
        ignore,
        runtime,
        global_args: global_args(&df, opts)?,
        consumed: Mutex::new(BTreeSet::new()),
        built: (0..stages).map(|_| Mutex::new(Slot::Pending)).collect(),
        step: Mutex::new(0),
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
        work: work.clone(),
        df,
    };
    let result = b.run();
    remove_tree(&work);
    result
}

/// The ARGs declared before the first FROM, with build-arg values or their
/// defaults (which may use the platform ARGs).
fn global_args(df: &Dockerfile, opts: &BuildOptions) -> Result<BTreeMap<String, String>> {
    let autos = platform_args();
    let mut global = BTreeMap::new();
    for a in &df.args_before_from {
        let value = match opts.build_args.get(&a.name) {
            Some(v) => Some(v.clone()),
            None => match &a.default {
                Some(d) => {
                    let vars = |n: &str| global.get(n).cloned().or_else(|| autos.get(n).cloned());
                    Some(
                        dockerfile::expand(d, &vars, df.directives.escape)
                            .map_err(|e| Error::Other(format!("ARG {}: {e}", a.name)))?,
                    )
                }
                None => autos.get(&a.name).cloned(),
            },
        };
        if let Some(v) = value {
            global.insert(a.name.clone(), v);
        }
    }
    Ok(global)
}

fn platform_args() -> BTreeMap<String, String> {
    let p = Platform::host();
    let mut m = BTreeMap::new();
    for prefix in ["TARGET", "BUILD"] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

impl Builder<'_> {
    fn say(&self, msg: &str) {
        if !self.opts.quiet {
            eprintln!("{msg}");
        }
    }

    /// Numbers a step and announces it as `#N what`.
    fn next_step(&self, what: &str) -> usize {
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        *step += 1;
        self.say(&format!("#{} {what}", *step));
        *step
    }

    fn escape(&self) -> char {
        self.df.directives.escape
    }

    fn expand(&self, state: &State, word: &str, line: usize) -> Result<String> {
        let vars = |name: &str| {
            state
                .env_get(name)
                .or_else(|| state.args.get(name).cloned())
        };
        dockerfile::expand(word, &vars, self.escape())
            .map_err(|e| Error::Other(format!("Dockerfile:{line}: {e}")))
    }

    fn run(&self) -> Result<(ImageRecord, Vec<String>)> {
        let target = match &self.opts.target {
            Some(t) => self
                .df
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| Error::invalid("--target", format!("no stage named {t:?}")))?,
            None => self.df.stages.len() - 1,
        };
        let state = self.build_needed(target)?;
        let consumed = self.consumed();
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| {
                !consumed.contains(*k)
                    && !self.global_args.contains_key(*k)
                    && !PROXY_ARGS.contains(&k.as_str())
            })
            .collect();
        if !unused.is_empty() {
            self.say(&format!(
                "[Warning] One or more build-args {unused:?} were not consumed"
            ));
        }
        self.finish(state)
    }

    fn consumed(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.consumed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds `target` with the stages it needs: those that do not depend
    /// on each other side by side, each on its own thread. The first error
    /// wins; the stages still running stop at their next step.
    fn build_needed(&self, target: usize) -> Result<State> {
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(self.stage_deps(i));
            }
        }
        needed.remove(&target);
        let result = std::thread::scope(|s| {
            for &i in &needed {
                // A stage's failure reaches the build through first_error.
                s.spawn(move || self.build_stage(i));
            }
            self.build_stage(target)
        });
        result.map_err(|_| {
            self.first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or(Error::Cancelled)
        })
    }

    /// The earlier stages stage `i` names in FROM, COPY --from or RUN
    /// --mount=from=, as far as
    /// the global ARGs resolve them. Names that need the stage's own ARGs
    /// are found when the step runs, and built then.
    fn stage_deps(&self, i: usize) -> Vec<usize> {
        let stage = &self.df.stages[i];
        let vars = |n: &str| self.global_args.get(n).cloned();
        let resolve = |word: &str| {
            dockerfile::expand(word, &vars, self.escape())
                .ok()
                .and_then(|w| self.stage_index(&w, i))
        };
        let mut deps: Vec<usize> = resolve(&stage.base).into_iter().collect();
        for ins in &stage.instructions {
            match &ins.kind {
                Kind::Copy(c) | Kind::Add(c) => deps.extend(c.from.as_deref().and_then(resolve)),
                Kind::Run { mounts, .. } => deps.extend(
                    mounts
                        .iter()
                        .flat_map(|m| m.split(','))
                        .filter_map(|kv| kv.trim().strip_prefix("from="))
                        .filter_map(resolve),
                ),
                _ => {}
            }
        }
        deps
    }

    /// The stage a FROM or --from word names, if it names one before `before`.
    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return (i < before).then_some(i);
        }
        let lower = name.to_ascii_lowercase();
        self.df.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Stage `i`'s final state, building it unless it is built already.
    fn build_stage(&self, i: usize) -> Result<State> {
        let mut slot = self.built[i].lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Slot::Built(s) => return Ok((**s).clone()),
            Slot::Failed => return Err(Error::Cancelled),
            Slot::Pending => {}
        }
        match self.build_stage_now(i) {
            Ok(s) => {
                *slot = Slot::Built(Box::new(s.clone()));
                Ok(s)
            }
            Err(e) => {
                *slot = Slot::Failed;
                self.cancel(e);
                Err(Error::Cancelled)
            }
        }
    }

    /// Keeps the build's first error and stops the other stages: no new
    /// steps, and RUN steps in flight are killed ([`run::run_bundle`]
    /// watches the flag).
    fn cancel(&self, e: Error) {
        if matches!(e, Error::Cancelled) || self.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.first_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }

    fn build_stage_now(&self, i: usize) -> Result<State> {
        let stage = self.df.stages[i].clone();
        let label = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let vars = |n: &str| self.global_args.get(n).cloned();
        let base = dockerfile::expand(&stage.base, &vars, self.escape())
            .map_err(|e| Error::Other(format!("Dockerfile:{}: FROM: {e}", stage.line)))?;
        let mut state = if base == "scratch" {
            State::scratch()
        } else if let Some(j) = self.stage_index(&base, i) {
            let mut s = self.build_stage(j)?;
            s.args.clear();
            s
        } else {
            self.image_state(&base, stage.platform.as_deref(), stage.line)?
        };
        state.cmd_inherited = state.config.config.cmd.is_some();
        self.next_step(&format!("[{label}] FROM {base}"));

        // ONBUILD triggers of the base run first, then are dropped.
        let triggers: Vec<String> = state
            .config
            .config
            .extra
            .remove("OnBuild")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        for t in triggers {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))
                .map_err(|e| Error::Other(format!("ONBUILD trigger {t:?} of {base}: {e}")))?;
            for ins in &parsed.stages[0].instructions {
                self.instruction(i, &label, &mut state, ins)?;
            }
        }
        for ins in &stage.instructions {
            self.instruction(i, &label, &mut state, ins)?;
        }
        Ok(state)
    }

    fn image_state(&self, name: &str, platform: Option<&str>, line: usize) -> Result<State> {
        let r: Reference = name
            .parse()
            .map_err(|e| Error::Other(format!("Dockerfile:{line}: FROM {name}: {e}")))?;
        let platform = match platform {
            Some(p) => {
                let vars = |n: &str| {
                    self.global_args
                        .get(n)
                        .cloned()
                        .or_else(|| platform_args().get(n).cloned())
                };
                Platform::parse(
                    &dockerfile::expand(p, &vars, self.escape()).map_err(Error::Other)?,
                )?
            }
            None => Platform::host(),
        };
        let record = pull::ensure(self.store, &r, platform, self.opts.quiet)?;
        let (manifest, config) = self.store.load(&record)?;
        let layers = manifest
            .layers
            .into_iter()
            .zip(config.rootfs.diff_ids.iter().cloned())
            .collect();
        let shell = config
            .config
            .extra
            .get("Shell")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        Ok(State {
            layers,
            config,
            args: BTreeMap::new(),
            shell,
            cmd_inherited: false,
        })
    }

    /// `lower` as an overlay with a fresh upper directory, for writes that
    /// must not reach it, with the paths in `hidden` whited out.
    fn scratch_overlay(&self, lower: &Path, hidden: &[PathBuf]) -> Result<Mounted> {
        let dir = self.work.join(unique_name("scratch-"));
        let m = Mounted { dir: dir.clone() };
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(dir.join(d))
                .context(|| format!("create {}", dir.join(d).display()))?;
        }
        for rel in hidden {
            let w = dir.join("upper").join(rel);
            if let Some(parent) = w.parent() {
                fs::create_dir_all(parent).context(|| format!("create {}", parent.display()))?;
            }
            // An overlayfs whiteout: a 0:0 character device.
            nix::sys::stat::mknod(
                &w,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .map_err(|e| Error::Path(w.clone(), format!("whiteout: {e}")))?;
        }
        Overlay {
            lowers: vec![lower.to_path_buf()],
            upper: &dir.join("upper"),
            work: &dir.join("work"),
            options: Vec::new(),
        }
        .mount(&m.merged())?;
        Ok(m)
    }

    /// Mounts `state`'s rootfs with a fresh upper directory.
    fn mount(&self, state: &State) -> Result<Mounted> {
        let dir = self.work.join(unique_name("step-"));
        let m = Mounted { dir: dir.clone() };
        for d in ["upper", "work", "merged", "empty"] {
            fs::create_dir_all(dir.join(d))
                .context(|| format!("create {}", dir.join(d).display()))?;
        }
        for (desc, diff_id) in &state.layers {
            if !self.store.has_layer(diff_id) {
                unpack_blob(self.store, desc, diff_id)?;
            }
        }
        let mut lowers: Vec<PathBuf> = state
            .layers
            .iter()
            .rev()
            .map(|(_, d)| self.store.layer_dir(d))
            .collect();
        if lowers.is_empty() {
            lowers.push(dir.join("empty"));
        }
        Overlay {
            lowers,
            upper: &dir.join("upper"),
            work: &dir.join("work"),
            // A plain diff in the upper dir: no redirects or metadata-only
            // copies that a layer tar cannot express.
            options: vec![
                ("redirect_dir", "off"),
                ("metacopy", "off"),
                ("index", "off"),
            ],
        }
        .mount(&m.merged())?;
        Ok(m)
    }

    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.store
            .root()
            .join("build-cache")
            .join(format!("{}.json", key.hex()))
    }

    fn cached(&self, key: &Digest) -> Option<(Descriptor, Digest, Option<String>)> {
        if self.opts.no_cache {
            return None;
        }
        let e: CacheEntry = serde_json::from_slice(&fs::read(self.cache_path(key)).ok()?).ok()?;
        self.store
            .has_blob(&e.layer.digest)
            .then_some((e.layer, e.diff_id, e.created))
    }

    /// Records a new layer in the cache; returns its creation time.
    fn remember(
        &self,
        key: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<Option<String>> {
        let p = self.cache_path(key);
        fs::create_dir_all(p.parent().unwrap()).context(|| format!("create {}", p.display()))?;
        let e = CacheEntry {
            layer: layer.clone(),
            diff_id: diff_id.clone(),
            created: Some(created_time()),
        };
        crate::store::atomic_write(&p, &serde_json::to_vec(&e).expect("cache entry serializes"))?;
        Ok(e.created)
    }

    /// Turns the upper dir of a finished step into a stored layer.
    fn commit(&self, m: &Mounted, exclude: HashSet<PathBuf>) -> Result<(Descriptor, Digest)> {
        let (desc, diff_id) =
            diff::store_diff(self.store, &m.upper(), exclude, self.opts.compression)?;
        if !self.store.has_layer(&diff_id) {
            unpack_blob(self.store, &desc, &diff_id)?;
        }
        Ok((desc, diff_id))
    }

    /// The env a RUN step sees: ARGs, overridden by ENV.
    fn run_env(&self, state: &State) -> Vec<String> {
        let mut env = state.env();
        for (k, v) in state.args.iter().chain(
            self.opts
                .build_args
                .iter()
                .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str())),
        ) {
            if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }

    fn instruction(
        &self,
        stage: usize,
        label: &str,
        state: &mut State,
        ins: &Instruction,
    ) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        let n = self.next_step(&format!(
            "[{label}] {}",
            ins.original.lines().next().unwrap_or("")
        ));
        let line = ins.line;
        let rc = &mut state.config.config;
        match &ins.kind {
            Kind::Run { .. } => return self.run_step(n, stage, state, ins),
            Kind::Copy(c) => return self.copy_step(n, stage, state, ins, c, false),
            Kind::Add(c) => return self.copy_step(n, stage, state, ins, c, true),
            Kind::Cmd(c) => {
                rc.cmd = Some(exec_form(&state.shell, c));
                state.cmd_inherited = false;
            }
            Kind::Entrypoint(c) => {
                rc.entrypoint = Some(exec_form(&state.shell, c));
                if state.cmd_inherited {
                    rc.cmd = None;
                    state.cmd_inherited = false;
                }
            }
            Kind::Env(pairs) => {
                let expanded: Vec<(String, String)> = pairs
                    .iter()
                    .map(|(k, v)| Ok((self.expand(state, k, line)?, self.expand(state, v, line)?)))
                    .collect::<Result<_>>()?;
                for (k, v) in expanded {
                    state.set_env(&k, &v);
                }
            }
            Kind::Arg(args) => {
                for a in args {
                    let value = if let Some(v) = self.opts.build_args.get(&a.name) {
                        self.consumed().insert(a.name.clone());
                        Some(v.clone())
                    } else if let Some(d) = &a.default {
                        Some(self.expand(state, d, line)?)
                    } else {
                        self.global_args
                            .get(&a.name)
                            .cloned()
                            .or_else(|| platform_args().get(&a.name).cloned())
                    };
                    if let Some(v) = value {
                        state.args.insert(a.name.clone(), v);
                    }
                }
            }
            Kind::Label(pairs) => {
                for (k, v) in pairs {
                    let (k, v) = (self.expand(state, k, line)?, self.expand(state, v, line)?);
                    state
                        .config
                        .config
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
            }
            Kind::Expose(ports) => {
                for p in ports {
                    let vars = |name: &str| {
                        state
                            .env_get(name)
                            .or_else(|| state.args.get(name).cloned())
                    };
                    for w in dockerfile::expand_words(p, &vars, self.escape())
                        .map_err(|e| Error::Other(format!("Dockerfile:{line}: {e}")))?
                    {
                        let w = if w.contains('/') {
                            w
                        } else {
                            format!("{w}/tcp")
                        };
                        state
                            .config
                            .config
                            .exposed_ports
                            .get_or_insert_with(BTreeMap::new)
                            .insert(w, json!({}));
                    }
                }
            }
            Kind::Workdir(w) => {
                let w = self.expand(state, w, line)?;
                let joined = join_workdir(&state.workdir(), &w);
                let clean = format!("/{}", crate::inroot::clean(Path::new(&joined)).display());
                state.config.config.working_dir = Some(clean);
            }
            Kind::User(u) => {
                let u = self.expand(state, u, line)?;
                state.config.config.user = Some(u);
            }
            Kind::Volume(vs) => {
                for v in vs {
                    let v = self.expand(state, v, line)?;
                    state
                        .config
                        .config
                        .volumes
                        .get_or_insert_with(BTreeMap::new)
                        .insert(v, json!({}));
                }
            }
            Kind::StopSignal(s) => {
                let s = self.expand(state, s, line)?;
                state.config.config.stop_signal = Some(s);
            }
            Kind::Healthcheck(h) => {
                let v = match h {
                    dockerfile::Healthcheck::None => json!({ "Test": ["NONE"] }),
                    dockerfile::Healthcheck::Cmd {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match test {
                            Command::Exec(v) => std::iter::once("CMD".to_string())
                                .chain(v.iter().cloned())
                                .collect::<Vec<_>>(),
                            Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                        };
                        let mut o = json!({ "Test": test });
                        for (k, d) in [
                            ("Interval", interval),
                            ("Timeout", timeout),
                            ("StartPeriod", start_period),
                            ("StartInterval", start_interval),
                        ] {
                            if let Some(d) = d {
                                o[k] = json!(go_duration(d)?);
                            }
                        }
                        if let Some(r) = retries {
                            o["Retries"] = json!(r);
                        }
                        o
                    }
                };
                state.config.config.extra.insert("Healthcheck".into(), v);
            }
            Kind::Shell(s) => {
                state.shell = s.clone();
                state.config.config.extra.insert("Shell".into(), json!(s));
            }
            Kind::Onbuild(inner) => {
                let list = state
                    .config
                    .config
                    .extra
                    .entry("OnBuild")
                    .or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(json!(inner.original));
                }
            }
            Kind::Maintainer(m) => {
                let m = self.expand(state, m, line)?;
                state.config.author = Some(m);
            }
        }
        state.history(&ins.original, true, None);
        Ok(())
    }

    fn run_step(&self, n: usize, stage: usize, state: &mut State, ins: &Instruction) -> Result<()> {
        let Kind::Run {
            cmd,
            mounts,
            network,
            heredocs: _,
        } = &ins.kind
        else {
            unreachable!("run_step is only called for RUN");
        };
        let net = match network.as_deref().unwrap_or("default") {
            "default" => self.opts.network.clone(),
            "host" => Network::Host,
            "none" => Network::None,
            other => {
                return Err(Error::Other(format!(
                    "Dockerfile:{}: RUN --network={other}: want default, host or none",
                    ins.line
                )))
            }
        };
        let env = self.run_env(state);
        let args_used: Vec<String> = state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mounts: Vec<RunMount> = mounts
            .iter()
            .map(|spec| self.run_mount(stage, state, spec, ins.line))
            .collect::<Result<_>>()?;
        let mount_keys: Vec<&Value> = mounts.iter().map(|m| &m.key).collect();
        let key = Digest::sha256_of(
            &serde_json::to_vec(&json!([
                "RUN",
                state.id(),
                ins.original,
                args_used,
                state.shell,
                format!("{net:?}"),
                mount_keys,
                format!("{:?}", self.opts.compression)
            ]))
            .unwrap(),
        );
        if let Some((desc, diff_id, created)) = self.cached(&key) {
            self.say(&format!("#{n} CACHED"));
            return self.add_layer(state, ins, desc, diff_id, created);
        }
        let m = self.mount(state)?;
        let merged = m.merged();
        let run_dir = self.work.join(unique_name("run-"));
        fs::create_dir_all(&run_dir).context(|| format!("create {}", run_dir.display()))?;

        // A heredoc script that names its interpreter runs as a file.
        let mut extra_mounts: Vec<Value> = Vec::new();
        let mut args = exec_form(&state.shell, cmd);
        if let Command::Shell(body) = cmd {
            if body.starts_with("#!")
                && ins.original.trim_start()[3..]
                    .trim_start()
                    .starts_with("<<")
            {
                let script = run_dir.join("script");
                fs::write(&script, body).context(|| format!("write {}", script.display()))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
                    .context(|| format!("chmod {}", script.display()))?;
                extra_mounts.push(json!({"destination": "/dev/.berth-img-script", "type": "bind", "source": script, "options": ["bind", "ro"]}));
                args = vec!["/dev/.berth-img-script".into()];
            }
        }
        extra_mounts.extend(mounts.iter().map(|m| m.spec.clone()));

        // Mount points the runtime creates that the image lacks stay out of
        // the layer.
        // Looked up inside the stage: an image's /etc may be a symlink.
        let stage_root =
            Root::open(&merged).map_err(|e| Error::Path(merged.clone(), e.to_string()))?;
        let missing = |rel: &Path| {
            stage_root
                .open_at(rel, OFlag::O_PATH | OFlag::O_NOFOLLOW)
                .is_err()
        };
        let stub_candidates = diff::RUNTIME_STUBS;
        let mut exclude: HashSet<PathBuf> = stub_candidates
            .iter()
            .filter(|p| missing(Path::new(p)))
            .map(PathBuf::from)
            .collect();
        for mnt in &extra_mounts {
            let dest = mnt["destination"].as_str().unwrap_or("");
            let rel = crate::inroot::clean(Path::new(dest));
            if missing(&rel) && !rel.starts_with("dev") {
                exclude.insert(rel);
            }
        }
        let etc_missing = missing(Path::new("etc"));
        drop(stage_root);

        let image = ImageConfig {
            config: RunConfig {
                entrypoint: None,
                cmd: None,
                ..state.config.config.clone()
            },
            ..state.config.clone()
        };
        let opts = bundle::Options {
            env: env.clone(),
            network: net.clone(),
            entrypoint: Some(Vec::new()),
            args: args.clone(),
            ..Default::default()
        };
        let etc = bundle::write_etc_files(&run_dir, "buildkitsandbox", &net)?;
        let mut spec = bundle::spec(&image, &opts, &merged, "buildkitsandbox", &etc, "build")?;
        spec["root"]["path"] = json!(merged);
        // The build's env exactly (bundle::spec adds HOSTNAME and HOME as
        // docker run does; RUN gets HOME only).
        spec["process"]["env"] = json!(env_with_home(&env, &spec));
        if let Some(list) = spec["mounts"].as_array_mut() {
            list.extend(extra_mounts);
        }
        crate::store::atomic_write(
            &run_dir.join("config.json"),
            &serde_json::to_vec_pretty(&spec).unwrap(),
        )?;
        let id = unique_name("berth-img-build-");
        let code = run::run_bundle(
            &self.runtime,
            &run::state_root(self.store),
            &run_dir,
            &id,
            &format!("#{n}"),
            self.opts.quiet,
            &self.failed,
        )?;
        remove_tree(&run_dir);
        if code != 0 {
            return Err(Error::RunFailed {
                line: ins.line,
                instruction: ins.original.lines().next().unwrap_or("").to_string(),
                code,
            });
        }
        if etc_missing {
            // The step may have made /etc a symlink: list it in the upper
            // dir itself, never where it points.
            let upper_etc = Root::open(&m.upper())
                .and_then(|u| {
                    u.open_at(
                        Path::new("etc"),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                    )
                })
                .map_err(std::io::Error::from)
                .and_then(|d| fs::read_dir(format!("/proc/self/fd/{}", d.as_raw_fd())));
            let only_stubs = upper_etc
                .map(|rd| {
                    rd.flatten().all(|e| {
                        ["hosts", "hostname", "resolv.conf"]
                            .contains(&e.file_name().to_str().unwrap_or(""))
                    })
                })
                .unwrap_or(true);
            if only_stubs {
                exclude.insert(PathBuf::from("etc"));
            }
        }
        overlay::unmount(&merged)?;
        let (desc, diff_id) = self.commit(&m, exclude)?;
        drop(m);
        let created = self.remember(&key, &desc, &diff_id)?;
        self.add_layer(state, ins, desc, diff_id, created)
    }

    /// `RUN --mount=type=cache|bind,...` as a bind mount in the container.
    /// A bind mount's source (the context, or `from=` a stage or an image)
    /// is resolved here, before the step's cache key, which includes its
    /// content.
    fn run_mount(&self, stage: usize, state: &State, spec: &str, line: usize) -> Result<RunMount> {
        let mut kv = BTreeMap::new();
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            kv.insert(k.trim().to_string(), self.expand(state, v.trim(), line)?);
        }
        let flag = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| kv.get(*n))
                .is_some_and(|v| v != "false")
        };
        let target = ["target", "dst", "destination"]
            .iter()
            .find_map(|k| kv.get(*k))
            .cloned()
            .ok_or_else(|| {
                Error::Other(format!(
                    "Dockerfile:{line}: RUN --mount={spec}: target is required"
                ))
            })?;
        let target = join_workdir(&state.workdir(), &target);
        match kv.get("type").map(String::as_str).unwrap_or("bind") {
            "cache" => {
                let id = kv.get("id").cloned().unwrap_or_else(|| target.clone());
                let dir = self
                    .store
                    .root()
                    .join("build-cache/mounts")
                    .join(Digest::sha256_of(id.as_bytes()).hex());
                fs::create_dir_all(&dir).context(|| format!("create {}", dir.display()))?;
                let mode = if flag(&["ro", "readonly"]) {
                    "ro"
                } else {
                    "rw"
                };
                Ok(RunMount {
                    // A cache's content never invalidates the step.
                    key: json!(["cache", id, target, mode]),
                    spec: json!({"destination": target, "type": "bind", "source": dir, "options": ["rbind", mode]}),
                    _from: None,
                })
            }
            "bind" => {
                let source = ["source", "src"]
                    .iter()
                    .find_map(|k| kv.get(*k))
                    .cloned()
                    .unwrap_or_default();
                let (root, ignore, from, origin) = match kv.get("from") {
                    None => (
                        self.context.clone(),
                        self.ignore.clone(),
                        None,
                        json!("context"),
                    ),
                    Some(f) => {
                        let src_state = match self.stage_index(f, stage) {
                            Some(j) => self.build_stage(j)?,
                            None => self.image_state(f, None, line)?,
                        };
                        let m = self.mount(&src_state)?;
                        (m.merged(), None, Some(m), json!(src_state.id()))
                    }
                };
                let not_found = || {
                    Error::Other(format!(
                        "Dockerfile:{line}: RUN --mount: {source:?} not found in {}",
                        kv.get("from")
                            .map_or("the build context".to_string(), |f| format!("{f:?}"))
                    ))
                };
                // The source is resolved inside its root, symlinks
                // included: a link to / in a stage must not bind the host's.
                let root = fs::canonicalize(&root).map_err(|e| Error::Path(root, e.to_string()))?;
                let fd = Root::open(&root)
                    .and_then(|r| {
                        r.open_at(&crate::inroot::clean(Path::new(&source)), OFlag::O_PATH)
                    })
                    .map_err(|_| not_found())?;
                let src = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map_err(|e| Error::Other(format!("resolve {source:?}: {e}")))?;
                let rel = src
                    .strip_prefix(&root)
                    .map_err(|_| not_found())?
                    .to_path_buf();
                let tree = copy::Source {
                    root,
                    ignore,
                    label: "build context".into(),
                };
                if !rel.as_os_str().is_empty() && tree.resolve(&rel.to_string_lossy()).is_err() {
                    // Excluded by .dockerignore: not in the context.
                    return Err(not_found());
                }
                let content = tree.digest(std::slice::from_ref(&rel))?;
                // Bind mounts are read-only unless rw is asked for; then
                // the step writes to a throwaway overlay, never to the
                // context (a stage's mount has its own upper already).
                // A context directory is shown as the context is sent:
                // what .dockerignore excludes below it is whited out.
                let rw = flag(&["rw", "readwrite"]);
                let hidden = match from {
                    None => tree.excluded_below(&rel),
                    Some(_) => Vec::new(),
                };
                let (src, from) = match from {
                    None if rw || !hidden.is_empty() => {
                        let o = self.scratch_overlay(&tree.root, &hidden)?;
                        (o.merged().join(&rel), Some(o))
                    }
                    from => (src, from),
                };
                let mode = if rw { "rw" } else { "ro" };
                Ok(RunMount {
                    key: json!(["bind", origin, rel, content, target, mode]),
                    spec: json!({"destination": target, "type": "bind", "source": src, "options": ["rbind", mode]}),
                    _from: from,
                })
            }
            other => Err(Error::Other(format!(
                "Dockerfile:{line}: RUN --mount=type={other} is not supported by berth-img"
            ))),
        }
    }

    fn copy_step(
        &self,
        n: usize,
        stage: usize,
        state: &mut State,
        ins: &Instruction,
        c: &CopyArgs,
        add: bool,
    ) -> Result<()> {
        let line = ins.line;
        let what = if add { "ADD" } else { "COPY" };
        let dest = self.expand(state, &c.dest, line)?;
        let dest = join_workdir(&state.workdir(), &dest);
        let sources: Vec<String> = c
            .sources
            .iter()
            .map(|s| self.expand(state, s, line))
            .collect::<Result<_>>()?;
        if add {
            if let Some(url) = sources.iter().find(|s| {
                s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
            }) {
                return Err(Error::Other(format!(
                    "Dockerfile:{line}: ADD {url}: remote sources are not supported (builds here have no network); download it into the context and ADD the file"
                )));
            }
        }
        // Where the sources come from: the context, an earlier stage, or an image.
        let mut from_mount = None;
        let (source, from_id) = match &c.from {
            None => (
                copy::Source {
                    root: self.context.clone(),
                    ignore: self.ignore.clone(),
                    label: "build context".into(),
                },
                None,
            ),
            Some(f) => {
                let f = self.expand(state, f, line)?;
                let src_state = match self.stage_index(&f, stage) {
                    Some(j) => self.build_stage(j)?,
                    None => self.image_state(&f, None, line)?,
                };
                let m = self.mount(&src_state)?;
                let root = m.merged();
                let id = src_state.id();
                from_mount = Some(m);
                (
                    copy::Source {
                        root,
                        ignore: None,
                        label: format!("stage or image {f:?}"),
                    },
                    Some(id),
                )
            }
        };
        let rels: Vec<PathBuf> = sources
            .iter()
            .map(|s| source.resolve(s))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let content = source.digest(&rels)?;
        let chown = c
            .chown
            .as_ref()
            .map(|s| self.expand(state, s, line))
            .transpose()?;
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.expand(state, m, line)?;
                Some(u32::from_str_radix(&m, 8).map_err(|_| {
                    Error::Other(format!(
                        "Dockerfile:{line}: {what} --chmod={m}: want an octal mode"
                    ))
                })?)
            }
            None => None,
        };
        let heredocs: Vec<(String, String)> = c
            .heredocs
            .iter()
            .map(|h| {
                let vars = |n: &str| state.env_get(n).or_else(|| state.args.get(n).cloned());
                let body = if h.expand {
                    dockerfile::expand_heredoc(&h.content, &vars).map_err(Error::Other)?
                } else {
                    h.content.clone()
                };
                Ok((h.name.clone(), body))
            })
            .collect::<Result<_>>()?;
        let key = Digest::sha256_of(
            &serde_json::to_vec(&json!([
                what,
                state.id(),
                ins.original,
                dest,
                sources,
                content,
                from_id,
                chown,
                chmod,
                heredocs,
                format!("{:?}", self.opts.compression)
            ]))
            .unwrap(),
        );
        if let Some((desc, diff_id, created)) = self.cached(&key) {
            drop(from_mount);
            self.say(&format!("#{n} CACHED"));
            return self.add_layer(state, ins, desc, diff_id, created);
        }
        let m = self.mount(state)?;
        let merged = m.merged();
        let (uid, gid) = match &chown {
            None => (0, 0),
            Some(spec) => {
                let spec = match spec.parse::<u32>() {
                    Ok(n) => format!("{n}:{n}"),
                    Err(_) => spec.clone(),
                };
                let u = users::resolve(&merged, &spec).map_err(|e| {
                    Error::Other(format!("Dockerfile:{line}: {what} --chown={spec}: {e}"))
                })?;
                (u.uid, u.gid)
            }
        };
        let o = copy::CopyOptions {
            uid,
            gid,
            chmod,
            keep_owner: false,
        };
        for (name, body) in &heredocs {
            copy::write_file(&merged, &dest, name, body, &o)?;
        }
        let count = rels.len() + heredocs.len();
        if !rels.is_empty() {
            if add && c.from.is_none() {
                for rel in &rels {
                    let archive = source.open_file(rel).filter(copy::is_archive);
                    if let Some(f) = archive {
                        copy::add_archive(f, rel, &merged, &dest)?;
                    } else {
                        let d = if count > 1 && !dest.ends_with('/') {
                            format!("{dest}/")
                        } else {
                            dest.clone()
                        };
                        copy::copy(&source, std::slice::from_ref(rel), &merged, &d, &o)?;
                    }
                }
            } else {
                copy::copy(&source, &rels, &merged, &dest, &o)?;
            }
        }
        drop(from_mount);
        overlay::unmount(&merged)?;
        let (desc, diff_id) = self.commit(&m, HashSet::new())?;
        drop(m);
        let created = self.remember(&key, &desc, &diff_id)?;
        self.add_layer(state, ins, desc, diff_id, created)
    }

    fn add_layer(
        &self,
        state: &mut State,
        ins: &Instruction,
        desc: Descriptor,
        diff_id: Digest,
        created: Option<String>,
    ) -> Result<()> {
        state.config.rootfs.diff_ids.push(diff_id.clone());
        state.layers.push((desc, diff_id));
        state.history(
            &ins.original,
            false,
            Some(created.unwrap_or_else(created_time)),
        );
        Ok(())
    }

    fn finish(&self, mut state: State) -> Result<(ImageRecord, Vec<String>)> {
        // The image is as old as its newest step: a cached rebuild keeps
        // its ID.
        let created = state.config.history.last().and_then(|h| h.created.clone());
        state.config.created = Some(created.unwrap_or_else(created_time));
        for (k, v) in &self.opts.labels {
            state
                .config
                .config
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
        let layers: Vec<Descriptor> = state.layers.iter().map(|(d, _)| d.clone()).collect();
        let mut names: Vec<String> = self
            .opts
            .tags
            .iter()
            .map(|t| t.parse::<Reference>().map(|r| r.to_string()))
            .collect::<Result<_>>()?;
        let config_id = Digest::sha256_of(&crate::image::to_json(&state.config));
        if names.is_empty() {
            names.push(format!("localhost/berth-build:{}", config_id.short()));
        }
        let mut record = None;
        for n in &names {
            record = Some(store_image(self.store, n, &state.config, layers.clone())?);
        }
        Ok((record.expect("at least one name"), names))
    }
}

/// The RUN env: the build's variables plus HOME (from the user, as docker
/// sets it), nothing else.
fn env_with_home(env: &[String], spec: &Value) -> Vec<String> {
    let mut out = env.to_vec();
    if !out.iter().any(|e| e.starts_with("HOME=")) {
        if let Some(home) = spec["process"]["env"].as_array().and_then(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .find(|e| e.starts_with("HOME="))
        }) {
            out.push(home.to_string());
        }
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_workdirs() {
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("500ms").unwrap(), 500_000_000);
        assert!(go_duration("5 minutes").is_err());
        assert_eq!(join_workdir("/app", "src/"), "/app/src/");
        assert_eq!(join_workdir("/", "x"), "/x");
        assert_eq!(join_workdir("/app", "/abs"), "/abs");
    }
}
