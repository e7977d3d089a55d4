//! The decoder-only language model on tract, in either KV-cache form.
//!
//! A causal LM exported to ONNX takes `input_ids` (+ optional `attention_mask`,
//! `position_ids`) and the cache `past_key_values.{i}.{key,value}`, and returns `logits` and
//! `present.{i}.{key,value}`. tract's `transformers_detect_all` transform usually turns that
//! cache into internal state ([`CacheForm::State`]): the inputs shrink to ids, mask and
//! positions, and the cache lives in the spawned [`TypedSimpleState`]. When the transform is
//! not applied, or does not recognise the pattern, the cache tensors stay explicit
//! ([`CacheForm::Explicit`]) and [`Session`] feeds them back itself. Both forms give the same
//! logits; [`Session`] hides the difference and is `Clone`, which is what prefix caching uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;

use super::LlmError;
use crate::model_cache::{CacheLocation, CacheOutcome};
use crate::runtime::{Model, ModelOptions};

/// Attention heads per KV-cache tensor accepted from a model file (they size the cache).
pub const MAX_HEADS: usize = 256;
/// Values per head accepted from a model file.
pub const MAX_HEAD_DIM: usize = 1024;
/// `past_key_values` inputs accepted from a model file (keys and values of 256 layers).
pub const MAX_CACHE_TENSORS: usize = 512;

/// Name prefix of the output-layer nodes in the converted SmolLM2 file
/// (`tools/convert_smollm2.py`).
pub const LM_HEAD: &str = "lm_head";

/// How the loaded model keeps its key/value cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheForm {
    /// The cache is tract state inside the spawned plan (after `transformers_detect_all`).
    State,
    /// The cache is `past_key_values.*` inputs and `present.*` outputs, fed back by us.
    Explicit,
}

/// How to load the model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Apply tract's `transformers_detect_all` transform (KV cache as state, fused RoPE,
    /// RMSNorm, attention). `false` keeps the exported graph, cache explicit.
    pub transform: bool,
    /// Matrix-multiplication threads (1 = no thread pool).
    pub threads: usize,
    /// Run the output layer (`lm_head.*` nodes) on the last position only: a prompt chunk
    /// then costs one output-layer product instead of one per token. [`Session::feed`]
    /// returns the last position's logits either way.
    pub last_position_only: bool,
    /// Where the prepared model is cached between starts.
    pub cache: CacheLocation,
    /// Run the 4-bit products on Weir's kernel ([`crate::q4_matmul`]) rather than tract's.
    pub q4_matmul: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            transform: true,
            threads: 1,
            last_position_only: true,
            cache: CacheLocation::default(),
            q4_matmul: true,
        }
    }
}

/// One cache input and the output that carries its next value.
#[derive(Clone, Debug)]
struct CachePair {
    input: usize,
    output: usize,
    /// `[1, heads, 0, head_dim]`, the empty past.
    empty: Tensor,
}

/// A loaded language model: the runnable plan and where its inputs and outputs are.
#[derive(Debug)]
pub struct LanguageModel {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    form: CacheForm,
    n_inputs: usize,
    input_ids: (usize, DatumType),
    attention_mask: Option<(usize, DatumType)>,
    position_ids: Option<(usize, DatumType)>,
    logits: usize,
    cache: Vec<CachePair>,
    load_time: Duration,
    cache_outcome: CacheOutcome,
}

fn run_err(e: TractError) -> LlmError {
    LlmError::Run(format!("{e:#}"))
}

impl LanguageModel {
    /// Loads and optimizes `path` (an ONNX file) through the shared [`Model`] runtime, then
    /// finds its inputs and outputs by name.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<LanguageModel, LlmError> {
        let model = Model::load(
            path,
            ModelOptions {
                threads: options.threads.max(1),
                transformers: options.transform,
                last_position_head: options.last_position_only.then(|| LM_HEAD.to_string()),
                cache: options.cache.clone(),
                fused_attention: false,
                q4_matmul: options.q4_matmul,
            },
        )?;
        let mut lm = LanguageModel::from_model(path, &model)?;
        lm.load_time = model.load_time();
        lm.cache_outcome = model.cache_outcome();
        Ok(lm)
    }

    fn from_model(path: &Path, loaded: &Model) -> Result<LanguageModel, LlmError> {
        let plan = loaded.plan().clone();
        let interface = |message: String| LlmError::Interface {
            path: path.to_path_buf(),
            message,
        };
        let model = plan.model();
        let inputs: Vec<(String, DatumType, TypedFact)> = model
            .input_outlets()
            .map_err(run_err)?
            .iter()
            .map(|o| {
                let fact = model.outlet_fact(*o).map_err(run_err)?.clone();
                Ok((model.node(o.node).name.clone(), fact.datum_type, fact))
            })
            .collect::<Result<_, LlmError>>()?;
        let outputs = loaded.output_names();
        let find_in = |name: &str| {
            inputs
                .iter()
                .position(|(n, _, _)| n == name)
                .map(|i| (i, inputs[i].1))
        };
        let input_ids = find_in("input_ids").ok_or_else(|| {
            interface(format!(
                "no `input_ids` input (inputs: {})",
                names(inputs.iter().map(|i| i.0.as_str()))
            ))
        })?;
        let logits = outputs.iter().position(|n| n == "logits").ok_or_else(|| {
            interface(format!(
                "no `logits` output (outputs: {})",
                names(outputs.iter().map(String::as_str))
            ))
        })?;
        let mut cache = Vec::new();
        for (i, (name, dt, fact)) in inputs.iter().enumerate() {
            let Some(rest) = name.strip_prefix("past_key_values.") else {
                continue;
            };
            let present = format!("present.{rest}");
            let output = outputs.iter().position(|n| *n == present).ok_or_else(|| {
                interface(format!("input `{name}` has no matching output `{present}`"))
            })?;
            let dims: Vec<Option<usize>> = fact.shape.iter().map(|d| d.to_usize().ok()).collect();
            let [Some(_), Some(heads), _, Some(head_dim)] = dims[..] else {
                return Err(interface(format!(
                    "input `{name}` should be [batch, heads, past, head_dim], found {:?}",
                    fact.shape
                )));
            };
            if !(1..=MAX_HEADS).contains(&heads) || !(1..=MAX_HEAD_DIM).contains(&head_dim) {
                return Err(interface(format!(
                    "input `{name}` has {heads} heads of {head_dim} values; expected \
                     1..={MAX_HEADS} heads of 1..={MAX_HEAD_DIM}"
                )));
            }
            if cache.len() >= MAX_CACHE_TENSORS {
                return Err(interface(format!(
                    "more than {MAX_CACHE_TENSORS} `past_key_values` inputs"
                )));
            }
            let empty = Tensor::zero_dt(*dt, &[1, heads, 0, head_dim]).map_err(run_err)?;
            cache.push(CachePair {
                input: i,
                output,
                empty,
            });
        }
        let form = if cache.is_empty() {
            CacheForm::State
        } else {
            CacheForm::Explicit
        };
        Ok(LanguageModel {
            path: path.to_path_buf(),
            n_inputs: inputs.len(),
            input_ids,
            attention_mask: find_in("attention_mask"),
            position_ids: find_in("position_ids"),
            logits,
            cache,
            form,
            plan,
            load_time: Duration::ZERO,
            cache_outcome: CacheOutcome::Off,
        })
    }

    /// The KV-cache form detected in the loaded model.
    pub fn cache_form(&self) -> CacheForm {
        self.form
    }

    /// Whether the model came from the model cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache_outcome
    }

    /// Wall time of [`LanguageModel::load`] (parse, transform, optimize).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The ONNX file this model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The matrix-product kernels of the optimized plan, one line per product: tract's kernel
    /// names (a matrix-vector and a matrix-matrix one when the product switches on the number
    /// of rows), then the panel extractors the product uses, if any, in brackets; then one
    /// [`crate::q4_matmul::KERNEL_NAME`] line per product on Weir's 4-bit operator. A
    /// diagnostic for benchmarks and tests.
    pub fn matmul_kernels(&self) -> Vec<String> {
        use tract_onnx::tract_core::ops::matmul::optimized::{OptMatMul, ProtoFusedSpec};
        let weir = self
            .plan
            .model()
            .nodes()
            .iter()
            .filter(|node| node.op_as::<crate::q4_matmul::Q4MatMul>().is_some())
            .map(|_| crate::q4_matmul::KERNEL_NAME.to_string());
        self.plan
            .model()
            .nodes()
            .iter()
            .filter_map(|node| node.op_as::<OptMatMul>())
            .map(|op| {
                let kernels: Vec<String> = op.mmm.iter().map(|k| k.name().to_string()).collect();
                let extractors: Vec<String> = op
                    .micro_ops
                    .iter()
                    .filter_map(|spec| match spec {
                        ProtoFusedSpec::AddMatMul { packings, .. } => Some(packings),
                        _ => None,
                    })
                    .flatten()
                    .filter_map(|(_, extractor)| extractor.as_ref().map(|e| e.name.clone()))
                    .collect();
                if extractors.is_empty() {
                    kernels.join(" / ")
                } else {
                    format!("{} [{}]", kernels.join(" / "), extractors.join(", "))
                }
            })
            .chain(weir)
            .collect()
    }

    /// A new conversation with an empty cache.
    pub fn session(&self) -> Result<Session, LlmError> {
        let state = self.plan.spawn().map_err(run_err)?;
        let past = self
            .cache
            .iter()
            .map(|c| c.empty.clone().into_tvalue())
            .collect();
        Ok(Session {
            state,
            past,
            pos: 0,
        })
    }

    fn int_tensor(dt: DatumType, values: &[i64]) -> Result<TValue, LlmError> {
        let t = Tensor::from_shape(&[1, values.len()], values).map_err(run_err)?;
        Ok(t.cast_to_dt(dt)
            .map_err(run_err)?
            .into_owned()
            .into_tvalue())
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// One sequence being decoded: the KV cache (state or tensors) and its length.
///
/// Cloning copies the cache, so a session run over a shared prefix (the system prompt) can be
/// cloned for every request instead of recomputing the prefix.
#[derive(Clone, Debug)]
pub struct Session {
    state: TypedSimpleState,
    /// Explicit form only: the cache tensors, in the order of `LanguageModel::cache`.
    past: Vec<TValue>,
    pos: usize,
}

impl Session {
    /// Number of tokens already in the cache (the position of the next token).
    pub fn len(&self) -> usize {
        self.pos
    }

    /// True if nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Runs `ids` through the model after the cached tokens and returns the logits of the last
    /// one. `ids` may be a whole prompt chunk or a single token.
    pub fn feed(&mut self, lm: &LanguageModel, ids: &[u32]) -> Result<Vec<f32>, LlmError> {
        if ids.is_empty() {
            return Err(LlmError::Run("nothing to feed (empty token list)".into()));
        }
        let total = self.pos + ids.len();
        let mut inputs: Vec<Option<TValue>> = vec![None; lm.n_inputs];
        let as_i64: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        inputs[lm.input_ids.0] = Some(LanguageModel::int_tensor(lm.input_ids.1, &as_i64)?);
        if let Some((ix, dt)) = lm.attention_mask {
            inputs[ix] = Some(LanguageModel::int_tensor(dt, &vec![1; total])?);
        }
        if let Some((ix, dt)) = lm.position_ids {
            let positions: Vec<i64> = (self.pos as i64..total as i64).collect();
            inputs[ix] = Some(LanguageModel::int_tensor(dt, &positions)?);
        }
        for (pair, past) in lm.cache.iter().zip(self.past.drain(..)) {
            inputs[pair.input] = Some(past);
        }
        let inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| LlmError::Interface {
                    path: lm.path.clone(),
                    message: format!(
                        "input #{i} is none of input_ids, attention_mask, position_ids, \
                         past_key_values.*"
                    ),
                })
            })
            .collect::<Result<TVec<TValue>, LlmError>>()?;
        let mut outputs = self.state.run(inputs).map_err(run_err)?;
        self.pos = total;
        for pair in &lm.cache {
            let present = std::mem::replace(
                &mut outputs[pair.output],
                Tensor::zero::<f32>(&[0]).map_err(run_err)?.into_tvalue(),
            );
            self.past.push(present);
        }
        let logits = &outputs[lm.logits];
        let vocab = logits.shape().last().copied().unwrap_or(0);
        let view = logits.try_as_plain_ram().map_err(run_err)?;
        let all = view.as_slice::<f32>().map_err(run_err)?;
        if vocab == 0 || all.len() < vocab {
            return Err(LlmError::Run(format!(
                "unexpected logits shape {:?}",
                logits.shape()
            )));
        }
        Ok(all[all.len() - vocab..].to_vec())
    }
}
