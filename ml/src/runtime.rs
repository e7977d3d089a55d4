//! Shared model runtime: ONNX files loaded with tract, optimized once, run many times.
//!
//! Every model node goes through [`Model`] so that loading, thread settings and errors look
//! the same everywhere: a missing file names the file and the command that fetches it, a
//! model whose inputs differ from what the node expects names both lists.
//!
//! ```no_run
//! use weir_ml::runtime::{Model, ModelOptions};
//! use tract_onnx::prelude::*;
//!
//! let vad = Model::load("models/silero_vad_16k.onnx", ModelOptions::default())?;
//! vad.expect_inputs(&["input", "state"])?;
//! let input = Tensor::zero::<f32>(&[1, 576]).unwrap();
//! let state = Tensor::zero::<f32>(&[2, 1, 128]).unwrap();
//! let outputs = vad.run(tvec![input.into(), state.into()])?;
//! # Ok::<(), weir_ml::runtime::ModelError>(())
//! ```
//!
//! Threads: with `threads == 1` a model runs on the calling thread (the node's own thread).
//! `threads > 1` gives the model a private pool of that many threads for its matrix products
//! and element-wise kernels (tract-linalg `multithread-mm`); requests above the number of
//! cores are clamped, with a warning. On a small shared machine 1 is usually best: every node
//! already has its own thread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_core::tract_linalg::multithread::Executor;
use tract_onnx::tract_core::transform::get_transform;

use crate::model_cache::{CacheEntry, CacheLocation, CacheOutcome, CACHE_ENV};

/// The command that fetches and converts every model into `models/`.
pub const FETCH_MODELS: &str = "bash tools/fetch-models.sh";

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOptions {
    /// Threads for the model's matrix products (1 = run on the calling thread).
    pub threads: usize,
    /// Apply tract's `transformers_detect_all` transform: recognised `Concat(past, new)`
    /// KV-cache patterns become internal state, kept in a [`ModelState`] across calls.
    pub transformers: bool,
    /// Name prefix of an output head (e.g. `lm_head`: nodes named `lm_head` or `lm_head.*`)
    /// that only needs the last sequence position. The one tensor the head takes from the
    /// rest of the graph is gathered at index -1 of axis 1 before it, so a prompt of `S`
    /// tokens runs the head once instead of `S` times and its output has length 1 on that
    /// axis. Exact for a head that works row by row (matrix products, norms). `None` (the
    /// default) leaves the graph as it is; a prefix no node has changes nothing.
    pub last_position_head: Option<String>,
    /// Where the prepared model is cached between starts (see [`crate::model_cache`]).
    pub cache: CacheLocation,
    /// Fuse attention chains over a fixed key set into Weir's own operator (see
    /// [`crate::attention`]): for decoders that attend from a few new tokens at a time. Applied
    /// after the cache, so it is not part of the cache key.
    pub fused_attention: bool,
    /// Compute products with 4-bit (`Q4_0`) constant weights with Weir's own operator (see
    /// [`crate::q4_matmul`]) instead of tract's. Applied after the cache, like
    /// `fused_attention`.
    pub q4_matmul: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            threads: 1,
            transformers: false,
            last_position_head: None,
            cache: CacheLocation::default(),
            fused_attention: false,
            q4_matmul: true,
        }
    }
}

impl ModelOptions {
    /// What in these options changes the prepared model (part of its cache key).
    fn cache_key(&self) -> String {
        format!(
            "transformers={} last_position_head={:?}",
            self.transformers, self.last_position_head
        )
    }

    /// Options with `threads` threads and no transform.
    pub fn threads(threads: usize) -> Self {
        ModelOptions {
            threads,
            ..ModelOptions::default()
        }
    }
}

/// Why a model could not be loaded or run. Every variant names the model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file does not exist.
    #[error("model file `{path}` not found: run {hint}", path = .path.display(), hint = fetch_hint(.fetch))]
    NotFound {
        /// The missing file.
        path: PathBuf,
        /// The command that fetches this model ([`FETCH_MODELS`] fetches them all).
        fetch: String,
    },
    /// The file exists but tract could not parse, type or optimize it.
    #[error("cannot load model `{path}`: {cause}", path = .path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// tract's explanation, with its context chain.
        cause: String,
    },
    /// The model's inputs or outputs are not the ones the caller works with.
    #[error(
        "model `{path}` has {what} [{found}], expected [{expected}]: is it the right file? \
         (re-run `{fetch}`)",
        path = .path.display(),
        fetch = FETCH_MODELS
    )]
    Mismatch {
        /// The model file.
        path: PathBuf,
        /// `inputs` or `outputs`.
        what: &'static str,
        /// The names the caller expects, in order.
        expected: String,
        /// The names the model declares, in order.
        found: String,
    },
    /// A run failed (wrong input shape, tract error).
    #[error("running model `{path}` failed: {cause}", path = .path.display())]
    Run {
        /// The model file.
        path: PathBuf,
        /// tract's explanation, with its context chain.
        cause: String,
    },
}

/// A loaded, optimized, runnable ONNX model. Cheap to share: clones share the plan.
#[derive(Clone)]
pub struct Model {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    threads: usize,
    load_time: Duration,
    cache: CacheOutcome,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads `path` (ONNX), types, optimizes and plans it.
    pub fn load(path: impl AsRef<Path>, options: ModelOptions) -> Result<Model, ModelError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(ModelError::NotFound {
                path,
                fetch: FETCH_MODELS.to_string(),
            });
        }
        let started = Instant::now();
        crate::kernels::ensure_registered();
        let threads = effective_threads(&path, options.threads);
        let load_err = |e: TractError| ModelError::Load {
            path: path.clone(),
            cause: chain(&e),
        };
        let mut stages = LoadStages::new(started);
        let (mut typed, cache) = prepared(&path, &options, &mut stages)?;
        let q4_matmul = options.q4_matmul && crate::q4_matmul::has_q4_weights(&typed);
        if options.fused_attention || q4_matmul {
            // A model read from the cache is not decluttered yet (tract's NNEF form spells
            // its products differently); Weir's rewrites match the decluttered form.
            typed = typed.into_decluttered().map_err(load_err)?;
            stages.mark("declutter");
            if options.fused_attention {
                let fused =
                    crate::attention::fuse_few_query_attention(&mut typed).map_err(load_err)?;
                tracing::debug!(path = %path.display(), fused, "attention fused");
            }
            if q4_matmul {
                let replaced = crate::q4_matmul::use_q4_matmul(&mut typed).map_err(load_err)?;
                tracing::debug!(path = %path.display(), replaced, "4-bit products on Weir's kernel");
            }
            stages.mark("weir rewrites");
        }
        let optimized = typed.into_optimized().map_err(load_err)?;
        stages.mark("optimize");
        let run_options = RunOptions {
            executor: executor(threads),
            ..RunOptions::default()
        };
        let plan = optimized
            .into_runnable_with_options(&run_options)
            .map_err(load_err)?;
        stages.mark("plan");
        release_freed_memory();
        let model = plan.model();
        let inputs = model
            .input_outlets()
            .map_err(load_err)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let outputs = model
            .output_outlets()
            .map_err(load_err)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .unwrap_or(&model.node(o.node).name)
                    .to_string()
            })
            .collect();
        let load_time = started.elapsed();
        tracing::debug!(path = %path.display(), ?load_time, threads, ?cache, stages = %stages, "model loaded");
        Ok(Model {
            path,
            plan,
            inputs,
            outputs,
            threads,
            load_time,
            cache,
        })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Input names, in the order [`Model::run`] takes them.
    pub fn input_names(&self) -> &[String] {
        &self.inputs
    }

    /// Output names, in the order [`Model::run`] returns them.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Threads the model runs on (after clamping).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Wall time [`Model::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Whether the model came from the model cache (see [`crate::model_cache`]).
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Fails with [`ModelError::Mismatch`] unless the model's inputs are exactly `names`, in
    /// this order.
    pub fn expect_inputs(&self, names: &[&str]) -> Result<(), ModelError> {
        self.expect("inputs", &self.inputs, names)
    }

    /// Fails with [`ModelError::Mismatch`] unless the model's first outputs are `names`, in
    /// this order (later outputs are allowed: some exporters add extra ones).
    pub fn expect_outputs(&self, names: &[&str]) -> Result<(), ModelError> {
        let found = &self.outputs[..self.outputs.len().min(names.len())];
        self.expect("outputs", found, names).map_err(|mut e| {
            if let ModelError::Mismatch { found, .. } = &mut e {
                *found = self.outputs.join(", ");
            }
            e
        })
    }

    fn expect(
        &self,
        what: &'static str,
        found: &[String],
        names: &[&str],
    ) -> Result<(), ModelError> {
        if found.len() == names.len() && found.iter().zip(names).all(|(a, b)| a == b) {
            return Ok(());
        }
        Err(ModelError::Mismatch {
            path: self.path.clone(),
            what,
            expected: names.join(", "),
            found: found.join(", "),
        })
    }

    /// Runs the model once on `inputs` (in [`Model::input_names`] order), with a fresh state.
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, ModelError> {
        self.plan.run(inputs).map_err(|e| self.run_error(&e))
    }

    /// A state for a series of runs that share internal state (the KV cache of a model
    /// loaded with [`ModelOptions::transformers`]). Spawn a new one to start over.
    pub fn spawn(&self) -> Result<ModelState, ModelError> {
        let state = self.plan.spawn().map_err(|e| self.run_error(&e))?;
        Ok(ModelState {
            path: self.path.clone(),
            state,
        })
    }

    /// The tract plan, for what this wrapper does not cover.
    pub fn plan(&self) -> &Arc<TypedRunnableModel> {
        &self.plan
    }

    fn run_error(&self, e: &TractError) -> ModelError {
        ModelError::Run {
            path: self.path.clone(),
            cause: chain(e),
        }
    }
}

/// A model's running state: successive [`ModelState::run`] calls share internal state.
#[derive(Debug)]
pub struct ModelState {
    path: PathBuf,
    state: TypedSimpleState,
}

impl ModelState {
    /// Runs the model once, keeping internal state for the next call.
    pub fn run(&mut self, inputs: TVec<TValue>) -> Result<TVec<TValue>, ModelError> {
        self.state.run(inputs).map_err(|e| ModelError::Run {
            path: self.path.clone(),
            cause: chain(&e),
        })
    }
}

/// The typed, decluttered model, ready for tract's optimization: from the cache when it has
/// an entry for this source and these options, otherwise parsed from the source (and then
/// stored in the cache).
fn prepared(
    path: &Path,
    options: &ModelOptions,
    stages: &mut LoadStages,
) -> Result<(TypedModel, CacheOutcome), ModelError> {
    let load_err = |e: TractError| ModelError::Load {
        path: path.to_path_buf(),
        cause: chain(&e),
    };
    let from_source =
        |stages: &mut LoadStages| from_source(path, options, stages).map_err(load_err);
    let Some(dir) = options.cache.resolve() else {
        return Ok((from_source(stages)?, CacheOutcome::Off));
    };
    let entry = match CacheEntry::for_source(&dir, path, &options.cache_key()) {
        Ok(entry) => entry,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot checksum the model for its cache entry: {e}");
            return Ok((from_source(stages)?, CacheOutcome::NotStored));
        }
    };
    stages.mark("checksum");
    let mut outcome = CacheOutcome::Stored;
    match entry.read() {
        Ok(Some(model)) => {
            stages.mark("cache read");
            return Ok((model, CacheOutcome::Hit));
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                entry = %entry.model_path().display(),
                "model cache entry not used ({e}): deleted, rebuilding it from the source"
            );
            entry.remove();
            outcome = CacheOutcome::Rebuilt;
        }
    }
    let typed = from_source(stages)?;
    match entry.write(&typed) {
        Ok(()) => stages.mark("cache write"),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                dir = %dir.display(),
                "model not cached, the next start parses it again: {e} (set {CACHE_ENV}=off \
                 to stop trying)"
            );
            outcome = CacheOutcome::NotStored;
        }
    }
    Ok((typed, outcome))
}

/// Parses, types and declutters the ONNX source, with the rewrites `options` ask for.
fn from_source(
    path: &Path,
    options: &ModelOptions,
    stages: &mut LoadStages,
) -> TractResult<TypedModel> {
    let mut inference = tract_onnx::onnx().model_for_path(path)?;
    stages.mark("parse");
    unique_names(inference.nodes_mut());
    if let Some(prefix) = &options.last_position_head {
        gather_last_position(&mut inference, prefix)?;
    }
    let typed = inference.into_typed()?;
    stages.mark("type");
    let mut typed = typed.into_decluttered()?;
    stages.mark("declutter");
    if options.transformers {
        let transform = get_transform("transformers_detect_all")?.ok_or_else(|| {
            TractError::msg(
                "tract has no `transformers_detect_all` transform (tract-onnx feature \
                 `transformers` is off)",
            )
        })?;
        transform.transform(&mut typed)?;
        stages.mark("transform");
    }
    Ok(typed)
}

/// Hands the memory freed by a load (the source's tensors, tract's intermediate graphs) back
/// to the system. glibc keeps freed memory in per-thread arenas, and each node loads its model
/// on its own thread, so without this the assistant's peak stays about 50 MB higher.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the system; it
    // takes the arenas' locks and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Wall time of each step of [`Model::load`], for its debug line.
struct LoadStages {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl LoadStages {
    fn new(started: Instant) -> Self {
        LoadStages {
            last: started,
            done: Vec::new(),
        }
    }

    /// Ends the step `name` now.
    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
}

impl fmt::Display for LoadStages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, took)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name} {} ms", took.as_millis())?;
        }
        Ok(())
    }
}

/// Renames nodes that share a name (`name`, `name#2`, ...). Some exporters give many nodes the
/// same name (Silero's openvino file has dozens of `F0::anon` constants), which tract's
/// consistency checks reject in debug builds.
/// Feeds the nodes named `prefix` or `prefix.*` only the last position (index -1 of axis 1)
/// of the single tensor they take from the rest of the graph (constants aside). Returns
/// whether there was such a head. Fails if the head reads more than one outside tensor, since
/// slicing only some of them would mix positions.
fn gather_last_position(model: &mut InferenceModel, prefix: &str) -> TractResult<bool> {
    let in_head = |name: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    let mut feeds: Vec<(OutletId, InletId)> = Vec::new();
    for node in model.nodes() {
        if !in_head(&node.name) {
            continue;
        }
        for (slot, input) in node.inputs.iter().enumerate() {
            let producer = model.node(input.node);
            if in_head(&producer.name) || producer.op.name() == "Const" {
                continue;
            }
            feeds.push((*input, InletId::new(node.id, slot)));
        }
    }
    let Some(&(source, _)) = feeds.first() else {
        return Ok(false);
    };
    if feeds.iter().any(|(outlet, _)| *outlet != source) {
        return Err(TractError::msg(format!(
            "the `{prefix}` head reads more than one tensor from the rest of the graph"
        )));
    }
    let index = model.add_const(format!("{prefix}.last_position.index"), tensor1(&[-1i64]))?;
    let last = model.wire_node(
        format!("{prefix}.last_position"),
        tract_onnx::tract_hir::ops::expandable::expand(
            tract_onnx::tract_hir::ops::array::Gather::new(1),
        ),
        &[source, index],
    )?[0];
    for (_, inlet) in feeds {
        model.add_edge(last, inlet)?;
    }
    Ok(true)
}

fn unique_names<F, O>(nodes: &mut [tract_onnx::tract_core::model::Node<F, O>])
where
    F: Fact + Clone + 'static,
{
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for node in nodes {
        let count = seen.entry(node.name.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            node.name = format!("{}#{}", node.name, count);
        }
    }
}

/// The values of an `f32` tensor (a model output), or `None` for another type.
pub fn f32_values(tensor: &Tensor) -> Option<&[f32]> {
    tensor.try_as_plain_ram().ok()?.as_slice::<f32>().ok()
}

/// "`bash tools/fetch-models.sh`", plus the model's own script when it has one.
fn fetch_hint(fetch: &str) -> String {
    if fetch == FETCH_MODELS {
        format!("`{FETCH_MODELS}`")
    } else {
        format!("`{FETCH_MODELS}` (or only this model: `{fetch}`)")
    }
}

/// Formats an error with its whole context chain (`outer: inner: root`).
fn chain(e: &TractError) -> String {
    let mut text = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
    }
    text
}

fn effective_threads(path: &Path, threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clamped = threads.clamp(1, cores.max(1));
    if clamped != threads {
        tracing::warn!(
            path = %path.display(),
            "model asked for {threads} threads; this machine has {cores} cores: using {clamped}"
        );
    }
    clamped
}

/// A private pool for `threads > 1`; the calling thread otherwise.
fn executor(threads: usize) -> Option<Executor> {
    if threads > 1 {
        Some(Executor::multithread_with_name(threads, "weir-model"))
    } else {
        Some(Executor::SingleThread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_file_and_fetch_command() {
        let err = Model::load("models/nope.onnx", ModelOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`models/nope.onnx` not found"), "{text}");
        assert!(text.contains(FETCH_MODELS), "{text}");
    }

    #[test]
    fn garbage_file_is_a_load_error() {
        let path = std::env::temp_dir().join(format!("weir-garbage-{}.onnx", std::process::id()));
        std::fs::write(&path, b"not an onnx file").unwrap();
        let err = Model::load(&path, ModelOptions::default()).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(matches!(err, ModelError::Load { .. }), "{err}");
        assert!(err.to_string().contains("weir-garbage"), "{err}");
    }
}
