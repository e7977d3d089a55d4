//! Attention of a few query rows over a fixed set of keys, fused into one tract operator.
//!
//! A decoder step (Whisper's cross-attention) attends from one or two new tokens to the
//! 750-frame encoder output. tract lowers the two products of that attention to its
//! general matrix kernels: it packs the keys and values into panels on every step (they
//! are inputs, not constants) and multiplies a single query row with a kernel made for 64
//! rows. Measured on Whisper tiny.en's decoder, that is about 0.9 ms per layer per token,
//! a third of the step. Here the same arithmetic reads keys and values once, in the layout
//! they arrive in, with no packing:
//!
//! ```text
//! scores[s] = sum_d q[d] * kt[d][s]      (rows of kt are contiguous in s)
//! p         = softmax(scores)
//! out[d]    = sum_s p[s] * v[s][d]       (rows of v are contiguous in d)
//! ```
//!
//! Both loops add a scaled contiguous row into an accumulator, which the compiler
//! vectorizes; on x86-64 the same code is also compiled for AVX2 + FMA and chosen at run
//! time.
//!
//! [`fuse_few_query_attention`] finds the pattern in a decluttered tract model (the
//! `EinSum` of the queries with the transposed keys, a `Softmax` over the keys, the
//! `EinSum` with the values) and replaces it with [`FewQueryAttention`]. It runs after the
//! model cache (the cache keeps tract's own operators), and only for models whose loader
//! asks for it ([`crate::runtime::ModelOptions::fused_attention`]): with hundreds of query
//! rows (an encoder), tract's matrix kernels are the better choice.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Slice;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Environment variable that, set to `off` before a model is loaded, keeps tract's own
/// operators for the attention (for A/B measurements).
pub const DISABLE_ENV: &str = "WEIR_FUSED_ATTENTION";

/// Einsum of queries `[T, H, D]` with transposed keys `[1, H, D, S]` into scores `[H, T, S]`,
/// as tract's declutter writes it.
const SCORES: &str = "mbk,abkn->bmn";
/// Einsum of weights `[H, T, S]` with values `[1, H, S, D]` into `[T, H, D]`.
const WEIGHTED: &str = "bmk,abkn->mbn";
/// The same einsum once tract has cut the weights to one query row (`[H, 1, S]`, a model
/// that only needs its last position) and dropped that axis: `[H, D]`.
const WEIGHTED_ONE_ROW: &str = "bmk,abkn->bn";

/// `softmax(q . kt) . v` per head, for queries `[T, H, D]`, transposed keys `[1, H, D, S]`
/// and values `[1, H, S, D]`; output `[T, H, D]`. Scaling is left to the queries, as in
/// the models this replaces.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub struct FewQueryAttention;

impl Op for FewQueryAttention {
    fn name(&self) -> StaticName {
        "WeirFewQueryAttention".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FewQueryAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [q, kt, v] = &*inputs else {
            bail!("{} takes 3 inputs, got {}", self.name(), inputs.len());
        };
        let shape = Shape::of(q.shape(), kt.shape(), v.shape())?;
        let mut out = Tensor::zero::<f32>(&[shape.queries, shape.heads, shape.dim])?;
        attend(
            shape,
            q.try_as_plain_ram()?.as_slice::<f32>()?,
            kt.try_as_plain_ram()?.as_slice::<f32>()?,
            v.try_as_plain_ram()?.as_slice::<f32>()?,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FewQueryAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (q, kt, v) = (inputs[0], inputs[1], inputs[2]);
        ensure!(q.rank() == 3 && kt.rank() == 4 && v.rank() == 4);
        ensure!(q.datum_type == f32::datum_type());
        ensure!(q.shape[1] == kt.shape[1] && q.shape[1] == v.shape[1]);
        ensure!(q.shape[2] == kt.shape[2] && q.shape[2] == v.shape[3]);
        ensure!(kt.shape[3] == v.shape[2]);
        Ok(tvec!(f32::fact(q.shape.clone())))
    }

    as_op!();
}

/// The sizes of one evaluation, checked against each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    queries: usize,
    heads: usize,
    dim: usize,
    keys: usize,
}

impl Shape {
    fn of(q: &[usize], kt: &[usize], v: &[usize]) -> TractResult<Shape> {
        let &[queries, heads, dim] = q else {
            bail!("queries must be [T, H, D], got {q:?}")
        };
        let &[1, kh, kd, keys] = kt else {
            bail!("transposed keys must be [1, H, D, S], got {kt:?}")
        };
        ensure!(
            (kh, kd) == (heads, dim) && v == [1, heads, keys, dim],
            "attention shapes disagree: q {q:?}, kt {kt:?}, v {v:?}"
        );
        Ok(Shape {
            queries,
            heads,
            dim,
            keys,
        })
    }
}

/// Runs the attention with the best code path this CPU has.
fn attend(shape: Shape, q: &[f32], kt: &[f32], v: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { attend_avx2(shape, q, kt, v, out) };
        return;
    }
    attend_portable(shape, q, kt, v, out);
}

/// [`attend_portable`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(shape: Shape, q: &[f32], kt: &[f32], v: &[f32], out: &mut [f32]) {
    attend_portable(shape, q, kt, v, out);
}

/// The attention, in plain Rust over contiguous rows.
#[inline(always)]
fn attend_portable(shape: Shape, q: &[f32], kt: &[f32], v: &[f32], out: &mut [f32]) {
    let Shape {
        queries,
        heads,
        dim,
        keys,
    } = shape;
    let mut scores = vec![0f32; keys];
    for t in 0..queries {
        for h in 0..heads {
            let row = (t * heads + h) * dim;
            let query = &q[row..row + dim];
            let keys_t = &kt[h * dim * keys..(h + 1) * dim * keys];
            scores.fill(0.0);
            for (&qd, key_row) in query.iter().zip(keys_t.chunks_exact(keys)) {
                add_scaled(&mut scores, qd, key_row);
            }
            softmax_in_place(&mut scores);
            let values = &v[h * keys * dim..(h + 1) * keys * dim];
            let o = &mut out[row..row + dim];
            for (&p, value_row) in scores.iter().zip(values.chunks_exact(dim)) {
                add_scaled(o, p, value_row);
            }
        }
    }
}

/// `acc += a * x`, element by element.
#[inline(always)]
fn add_scaled(acc: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in acc.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `x = exp(x - max) / sum`, in place.
#[inline(always)]
fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let scale = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= scale;
    }
}

/// Replaces every `EinSum (queries . transposed keys) -> Softmax -> EinSum (. values)` chain
/// of `model` (decluttered, f32) with one [`FewQueryAttention`]; returns how many it
/// replaced. Chains whose intermediate results are used elsewhere are left alone. Nothing is
/// replaced when [`DISABLE_ENV`] is `off`.
pub fn fuse_few_query_attention(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var(DISABLE_ENV).is_ok_and(|v| v == "off") {
        return Ok(0);
    }
    let mut fused = 0;
    while let Some(chain) = find_chain(model)? {
        let mut patch = TypedModelPatch::default();
        let name = &model.node(chain.weighted).name;
        let mut q = patch.tap_model(model, model.node(chain.scores).inputs[0])?;
        if let Some(rows) = &chain.rows {
            // The same query rows the weights were cut to (queries are `[T, H, D]`).
            let slice = Slice::new(0, rows.start.clone(), rows.end.clone());
            q = patch.wire_node(format!("{name}.weir_rows"), slice, &[q])?[0];
        }
        let kt = patch.tap_model(model, model.node(chain.scores).inputs[1])?;
        let v = patch.tap_model(model, model.node(chain.weighted).inputs[1])?;
        let mut out = patch.wire_node(
            format!("{name}.weir_attention"),
            FewQueryAttention,
            &[q, kt, v],
        )?;
        if chain.rows.is_some() {
            out = patch.wire_node(format!("{name}.weir_one_row"), AxisOp::Rm(0), &out)?;
        }
        patch.shunt_outside(model, chain.weighted.into(), out[0])?;
        patch.apply(model)?;
        fused += 1;
    }
    if fused > 0 {
        model.compact()?;
    }
    Ok(fused)
}

/// An attention chain found in a model.
struct Chain {
    /// The `EinSum` of queries and transposed keys.
    scores: usize,
    /// The `EinSum` of the weights and the values, whose output the fused op replaces.
    weighted: usize,
    /// The query rows kept by a `Slice` between the `Softmax` and the weighted `EinSum`
    /// (one row), if there is one.
    rows: Option<std::ops::Range<TDim>>,
}

/// The next chain to fuse.
fn find_chain(model: &TypedModel) -> TractResult<Option<Chain>> {
    for node in model.eval_order()? {
        let node = model.node(node);
        if !is_einsum(node, SCORES) || node.inputs.len() != 2 {
            continue;
        }
        let Some(softmax) = model.single_succ(node.id)? else {
            continue;
        };
        let is_softmax = softmax.op_as::<Softmax>().is_some_and(|s| {
            *s.axes == [2] && s.kind == SoftmaxKind::Softmax && s.quant_output_dt.is_none()
        });
        if !is_softmax {
            continue;
        }
        let Some(mut weighted) = model.single_succ(softmax.id)? else {
            continue;
        };
        // The node whose output the weighted einsum multiplies: the softmax, or the slice
        // of it to one query row.
        let mut weights = softmax.id;
        let mut rows = None;
        if let Some(slice) = weighted.op_as::<Slice>() {
            if slice.axis != 1 || slice.end.clone() - slice.start.clone() != TDim::Val(1) {
                continue;
            }
            rows = Some(slice.start.clone()..slice.end.clone());
            weights = weighted.id;
            let Some(next) = model.single_succ(weighted.id)? else {
                continue;
            };
            weighted = next;
        }
        let expected = if rows.is_some() {
            WEIGHTED_ONE_ROW
        } else {
            WEIGHTED
        };
        if !is_einsum(weighted, expected)
            || weighted.inputs.len() != 2
            || weighted.inputs[0] != weights.into()
        {
            continue;
        }
        let facts = [node.inputs[0], node.inputs[1], weighted.inputs[1]]
            .iter()
            .map(|o| model.outlet_fact(*o))
            .collect::<TractResult<TVec<_>>>()?;
        if FewQueryAttention.output_facts(&facts).is_ok() {
            return Ok(Some(Chain {
                scores: node.id,
                weighted: weighted.id,
                rows,
            }));
        }
    }
    Ok(None)
}

/// True if `node` is a plain f32 `EinSum` with the expression `axes`, up to the names of its
/// axes (tract names them differently depending on where the model came from).
fn is_einsum(node: &TypedNode, axes: &str) -> bool {
    node.op_as::<EinSum>().is_some_and(|e| {
        e.q_params.is_none()
            && e.operating_dt == f32::datum_type()
            && canonical(&e.axes.to_string()) == canonical(axes)
    })
}

/// An einsum expression with its axes renamed `a`, `b`, ... in order of first appearance.
fn canonical(expression: &str) -> String {
    let mut seen: Vec<char> = Vec::new();
    expression
        .chars()
        .map(|c| {
            if !c.is_ascii_alphabetic() {
                return c;
            }
            let i = seen.iter().position(|&s| s == c).unwrap_or_else(|| {
                seen.push(c);
                seen.len() - 1
            });
            char::from(b'a' + i as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attention computed the plain way, for comparison.
    fn reference(shape: Shape, q: &[f32], kt: &[f32], v: &[f32]) -> Vec<f32> {
        let Shape {
            queries,
            heads,
            dim,
            keys,
        } = shape;
        let mut out = vec![0f32; queries * heads * dim];
        for t in 0..queries {
            for h in 0..heads {
                let s: Vec<f64> = (0..keys)
                    .map(|s| {
                        (0..dim)
                            .map(|d| {
                                f64::from(q[(t * heads + h) * dim + d])
                                    * f64::from(kt[(h * dim + d) * keys + s])
                            })
                            .sum()
                    })
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..dim {
                    let acc: f64 = (0..keys)
                        .map(|s| e[s] / sum * f64::from(v[(h * keys + s) * dim + d]))
                        .sum();
                    out[(t * heads + h) * dim + d] = acc as f32;
                }
            }
        }
        out
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_plain_computation() {
        let shape = Shape {
            queries: 2,
            heads: 3,
            dim: 8,
            keys: 37,
        };
        let q = values(2 * 3 * 8, 1);
        let kt = values(3 * 8 * 37, 2);
        let v = values(3 * 37 * 8, 3);
        let mut out = vec![0f32; 2 * 3 * 8];
        attend(shape, &q, &kt, &v, &mut out);
        let expected = reference(shape, &q, &kt, &v);
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let mut portable = vec![0f32; out.len()];
        attend_portable(shape, &q, &kt, &v, &mut portable);
        for (a, b) in portable.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn expressions_compare_up_to_axis_names() {
        assert_eq!(canonical(SCORES), canonical("mak,bakn->amn"));
        assert_eq!(canonical(WEIGHTED), canonical("amk,bakn->man"));
        assert_ne!(canonical(SCORES), canonical(WEIGHTED));
    }

    #[test]
    fn shapes_that_disagree_are_errors() {
        assert!(Shape::of(&[1, 6, 64], &[1, 6, 64, 750], &[1, 6, 750, 64]).is_ok());
        assert!(Shape::of(&[1, 6, 64], &[1, 6, 64, 750], &[1, 6, 749, 64]).is_err());
        assert!(Shape::of(&[1, 6, 64], &[2, 6, 64, 750], &[1, 6, 750, 64]).is_err());
        assert!(Shape::of(&[1, 6], &[1, 6, 64, 750], &[1, 6, 750, 64]).is_err());
    }
}
