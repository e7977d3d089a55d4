//! Products with 4-bit (`Q4_0`) weights, read as they are stored, one weight row at a time.
//!
//! SmolLM2's layers and Whisper's output projection are `MatMulNBits` products: an activation
//! `[R, K]` times a weight `[N, K]` stored in `Q4_0` blocks (32 values in 18 bytes: an f16
//! scale `d`, then 16 bytes whose low nibbles are values 0..16 and high nibbles values 16..32,
//! each meaning `d * (q - 8)`). tract repacks those weights into panels when it optimizes a
//! model (the largest part of SmolLM2's load) and multiplies them with a 256-bit kernel made
//! for several activation rows; a decode step has one. Measured on this machine, that kernel
//! reads the weights at about 2.5 GB/s, a tenth of what the memory delivers.
//!
//! [`Q4MatMul`] keeps the weights as stored (no second copy) and computes each output as a dot
//! product of a weight row and an activation row: every block is widened to f32 once, scaled,
//! and multiplied with up to [`ROWS`] activation rows at a time (a prompt reuses each
//! dequantized block for several rows). The arithmetic is f32 throughout, as in tract's kernel;
//! only the order of the additions differs. The kernel is hand-written for AVX-512F; the model
//! rewrite only happens on CPUs that have it ([`has_fast_kernel`]), since a 256-bit version
//! was slower than tract's own kernel on one row. The portable path is the reference the
//! tests compare with, and what runs should a plan with this operator meet another CPU.
//!
//! [`use_q4_matmul`] replaces the `EinSum` nodes of a decluttered model whose weight is a
//! `Q4_0` constant and whose layout is a plain row product (checked from the expression).

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::tract_linalg::block_quant::BlockQuantStorage;

/// Values per `Q4_0` block.
const BLOCK: usize = 32;
/// Bytes per `Q4_0` block: an f16 scale and 16 bytes of nibbles.
const BLOCK_BYTES: usize = 18;
/// Activation rows multiplied with each dequantized block at once.
pub const ROWS: usize = 4;

/// The name [`crate::llm::LanguageModel::matmul_kernels`] gives this operator's products.
pub const KERNEL_NAME: &str = "weir_q4_matmul";

/// Environment variable that, set to `off` before a model is loaded, keeps tract's own
/// `Q4_0` products (for A/B measurements).
pub const DISABLE_ENV: &str = "WEIR_Q4_MATMUL";

/// Where an output axis comes from.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum OutAxis {
    /// The activation's axis at this position.
    Input(usize),
    /// An axis of size 1 the einsum adds.
    One,
    /// The weight's output axis (`N`).
    Output,
}

/// `x [.., K] . W^T` with `W [N, K]` in `Q4_0` blocks; output `[.., N]` (the activation's
/// other axes, in order, with size-1 axes added or dropped as the replaced einsum did).
#[derive(Debug, Clone)]
pub struct Q4MatMul {
    weights: Arc<Q4Weights>,
    n: usize,
    k: usize,
    /// Activation axes that make up `K` (the trailing ones).
    k_axes: usize,
    out_axes: Vec<OutAxis>,
}

/// `Q4_0` weights `[N, K]` split into their nibbles and their scales, so that a kernel reads
/// each as a plain array: 16 bytes of nibbles per block (as stored) and one f32 scale per block
/// (stored as f16; widened once here instead of on every product). 0.625 bytes per weight
/// against `Q4_0`'s 0.5625.
#[derive(Debug)]
struct Q4Weights {
    /// `[N][K / 32][16]`.
    nibbles: Vec<u8>,
    /// `[N][K / 32]`.
    scales: Vec<f32>,
}

impl Q4Weights {
    /// Splits `Q4_0` blocks.
    fn from_blocks(blocks: &[u8]) -> Q4Weights {
        let count = blocks.len() / BLOCK_BYTES;
        let mut nibbles = Vec::with_capacity(count * 16);
        let mut scales = Vec::with_capacity(count);
        for block in blocks.chunks_exact(BLOCK_BYTES) {
            scales.push(f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32());
            nibbles.extend_from_slice(&block[2..]);
        }
        Q4Weights { nibbles, scales }
    }
}

impl PartialEq for Q4MatMul {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
            && (self.n, self.k, self.k_axes) == (other.n, other.k, other.k_axes)
            && self.out_axes == other.out_axes
    }
}

impl Eq for Q4MatMul {}

impl Op for Q4MatMul {
    fn name(&self) -> StaticName {
        "WeirQ4MatMul".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("N={} K={}", self.n, self.k)])
    }

    op_as_typed_op!();
}

impl EvalOp for Q4MatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let rank = x.rank();
        ensure!(rank >= self.k_axes, "activation of rank {rank}");
        let k: usize = x.shape()[rank - self.k_axes..].iter().product();
        ensure!(
            k == self.k,
            "activation rows of {k} values, weights of {}",
            self.k
        );
        let rows: usize = x.shape()[..rank - self.k_axes].iter().product();
        let shape: TVec<usize> = self
            .out_axes
            .iter()
            .map(|a| match a {
                OutAxis::Input(i) => x.shape()[*i],
                OutAxis::One => 1,
                OutAxis::Output => self.n,
            })
            .collect();
        let mut out = Tensor::zero::<f32>(&shape)?;
        let x = x.try_as_plain_ram()?;
        multiply(
            &self.weights,
            self.n,
            self.k,
            x.as_slice::<f32>()?,
            rows,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Q4MatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(x.datum_type == f32::datum_type());
        let shape: TVec<TDim> = self
            .out_axes
            .iter()
            .map(|a| match a {
                OutAxis::Input(i) => x.shape[*i].clone(),
                OutAxis::One => 1.into(),
                OutAxis::Output => self.n.into(),
            })
            .collect();
        Ok(tvec!(f32::fact(shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (self.n * self.k).into()
        )))
    }

    as_op!();
}

/// `out[r][n] = sum_k x[r][k] * w[n][k]` for `rows` activation rows.
fn multiply(w: &Q4Weights, n: usize, k: usize, x: &[f32], rows: usize, out: &mut [f32]) {
    assert_eq!(w.nibbles.len(), n * k / 2);
    assert_eq!(w.scales.len(), n * k / BLOCK);
    assert_eq!(x.len(), rows * k);
    assert_eq!(out.len(), rows * n);
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F (checked just above); sizes checked above.
        unsafe { avx512::multiply(w, n, k, x, rows, out) };
        return;
    }
    multiply_portable(w, n, k, x, rows, out);
}

/// The product in plain Rust: each block is dequantized once per group of [`ROWS`] rows.
#[inline(always)]
fn multiply_portable(w: &Q4Weights, n: usize, k: usize, x: &[f32], rows: usize, out: &mut [f32]) {
    let blocks = k / BLOCK;
    let mut block = [0f32; BLOCK];
    for first in (0..rows).step_by(ROWS) {
        let group = ROWS.min(rows - first);
        for j in 0..n {
            let mut acc = [0f32; ROWS];
            for b in 0..blocks {
                let at = j * blocks + b;
                let nibbles = &w.nibbles[at * 16..at * 16 + 16];
                for (i, &byte) in nibbles.iter().enumerate() {
                    block[i] = f32::from((byte & 0x0f) as i8 - 8);
                    block[i + 16] = f32::from((byte >> 4) as i8 - 8);
                }
                for (r, acc) in acc.iter_mut().enumerate().take(group) {
                    let xs = &x[(first + r) * k + b * BLOCK..][..BLOCK];
                    let mut lanes = [0f32; 8];
                    for (w, x) in block.chunks_exact(8).zip(xs.chunks_exact(8)) {
                        for l in 0..8 {
                            lanes[l] += w[l] * x[l];
                        }
                    }
                    *acc += lanes.iter().sum::<f32>() * w.scales[at];
                }
            }
            for (r, acc) in acc.iter().enumerate().take(group) {
                out[(first + r) * n + j] = *acc;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Q4Weights, BLOCK, ROWS};

    /// True if this CPU can run [`multiply`].
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// The product with 512-bit registers. A block's 32 values become two registers of 16
    /// f32 (low and high nibbles, minus 8); their products with an activation row are summed
    /// and scaled into that row's accumulator. `H` weight rows are computed together so that
    /// the additions of one do not wait for another's.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the sizes must be those [`super::multiply`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn multiply(
        w: &Q4Weights,
        n: usize,
        k: usize,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) {
        for first in (0..rows).step_by(ROWS) {
            let group = ROWS.min(rows - first);
            let xs = &x[first * k..(first + group) * k];
            let o = &mut out[first * n..(first + group) * n];
            // SAFETY: forwarded from the caller.
            unsafe {
                match group {
                    1 => weight_rows::<4, 1>(w, n, k, xs, o),
                    2 => weight_rows::<2, 2>(w, n, k, xs, o),
                    3 => weight_rows::<2, 3>(w, n, k, xs, o),
                    _ => weight_rows::<2, 4>(w, n, k, xs, o),
                }
            }
        }
    }

    /// All `n` outputs of `G` activation rows, `H` weight rows at a time (then one at a time
    /// for what is left).
    #[inline(always)]
    unsafe fn weight_rows<const H: usize, const G: usize>(
        w: &Q4Weights,
        n: usize,
        k: usize,
        xs: &[f32],
        out: &mut [f32],
    ) {
        let mut j = 0;
        while j + H <= n {
            // SAFETY: rows j..j+H exist.
            let sums = unsafe { dot::<H, G>(w, j, k, xs) };
            for (h, sums) in sums.iter().enumerate() {
                for (r, s) in sums.iter().enumerate() {
                    out[r * n + j + h] = *s;
                }
            }
            j += H;
        }
        while j < n {
            // SAFETY: row j exists.
            let sums = unsafe { dot::<1, G>(w, j, k, xs) };
            for (r, s) in sums[0].iter().enumerate() {
                out[r * n + j] = *s;
            }
            j += 1;
        }
    }

    /// Dot products of weight rows `j..j + H` with the `G` rows of `xs`.
    ///
    /// # Safety
    /// AVX-512F; rows `j..j + H` exist in `w`, `xs` holds `G * k` values.
    #[inline(always)]
    unsafe fn dot<const H: usize, const G: usize>(
        w: &Q4Weights,
        j: usize,
        k: usize,
        xs: &[f32],
    ) -> [[f32; G]; H] {
        let blocks = k / BLOCK;
        debug_assert!((j + H) * blocks * 16 <= w.nibbles.len() && xs.len() >= G * k);
        let mask = _mm_set1_epi8(0x0f);
        let eight = _mm_set1_epi8(8);
        let mut acc = [[_mm512_setzero_ps(); G]; H];
        let nibbles = w.nibbles.as_ptr();
        let scales = w.scales.as_ptr();
        let x = xs.as_ptr();
        for b in 0..blocks {
            for (h, acc) in acc.iter_mut().enumerate() {
                let at = (j + h) * blocks + b;
                // SAFETY: block `at` lies within the weights (the caller's row range).
                let (q, d) = unsafe {
                    (
                        _mm_loadu_si128(nibbles.add(at * 16) as *const __m128i),
                        _mm512_set1_ps(*scales.add(at)),
                    )
                };
                let lo = _mm_sub_epi8(_mm_and_si128(q, mask), eight);
                let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), mask), eight);
                let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo));
                let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi));
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: values `b * 32 .. b * 32 + 32` of row `r` lie within `xs`.
                    let (x_lo, x_hi) = unsafe {
                        let xr = x.add(r * k + b * BLOCK);
                        (_mm512_loadu_ps(xr), _mm512_loadu_ps(xr.add(16)))
                    };
                    let block_dot = _mm512_fmadd_ps(hi, x_hi, _mm512_mul_ps(lo, x_lo));
                    *acc = _mm512_fmadd_ps(block_dot, d, *acc);
                }
            }
        }
        let mut sums = [[0f32; G]; H];
        for h in 0..H {
            for r in 0..G {
                sums[h][r] = _mm512_reduce_add_ps(acc[h][r]);
            }
        }
        sums
    }
}

/// True if this CPU has a Weir kernel faster than tract's for these products (AVX-512F).
/// Elsewhere (AVX2-only x86-64, Arm) tract's own kernels stay: measured, a 256-bit version of
/// this kernel was slower than tract's on one activation row.
pub fn has_fast_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True if `model` holds a `Q4_0` constant (so [`use_q4_matmul`] may have work) and this CPU
/// has the fast kernel.
pub fn has_q4_weights(model: &TypedModel) -> bool {
    has_fast_kernel()
        && model.nodes().iter().any(|node| {
            node.op_as::<Const>()
                .is_some_and(|k| k.val().try_storage_as::<BlockQuantStorage>().is_ok())
        })
}

/// Replaces every `EinSum` of `model` (decluttered) that multiplies an f32 activation with a
/// `Q4_0` constant weight `[N, K..]` as a plain row product by a [`Q4MatMul`]; returns how
/// many it replaced. Nothing is replaced when [`DISABLE_ENV`] is `off` or the CPU has no fast
/// kernel ([`has_fast_kernel`]).
pub fn use_q4_matmul(model: &mut TypedModel) -> TractResult<usize> {
    if std::env::var(DISABLE_ENV).is_ok_and(|v| v == "off") || !has_fast_kernel() {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let Some(product) = q4_product(model, model.node(id))? else {
            continue;
        };
        let node = model.node(id);
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[product.x_input])?;
        let out = patch.wire_node(format!("{}.weir_q4", node.name), product.op, &[x])?;
        patch.shunt_outside(model, id.into(), out[0])?;
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        model.compact()?;
    }
    Ok(replaced)
}

/// The [`Q4MatMul`] that computes `node`, if it is a plain row product with a `Q4_0` weight.
fn q4_product(model: &TypedModel, node: &TypedNode) -> TractResult<Option<Q4Product>> {
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
    {
        return Ok(None);
    }
    // The weight is either input (tract puts it first or second depending on where the
    // model came from).
    let Some((w_input, konst)) = (0..2).find_map(|i| {
        let konst = model.node(node.inputs[i].node).op_as::<Const>()?;
        Some((i, konst))
    }) else {
        return Ok(None);
    };
    let x_input = 1 - w_input;
    let weight = konst.val();
    let Ok(storage) = weight.try_storage_as::<BlockQuantStorage>() else {
        return Ok(None);
    };
    let format = storage.format();
    if format.to_string() != "Q4_0"
        || format.block_len() != BLOCK
        || format.block_bytes() != BLOCK_BYTES
    {
        return Ok(None);
    }
    let x_fact = model.outlet_fact(node.inputs[x_input])?;
    let out_fact = model.outlet_fact(node.id.into())?;
    if x_fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let expression = einsum.axes.to_string();
    let Some((inputs, output)) = expression.split_once("->") else {
        return Ok(None);
    };
    let terms: Vec<Vec<char>> = inputs.split(',').map(|t| t.chars().collect()).collect();
    if terms.len() != 2 {
        return Ok(None);
    }
    let output: Vec<char> = output.chars().collect();
    let Some(layout) = Layout::of(
        &terms[x_input],
        &terms[w_input],
        &output,
        &x_fact.shape,
        &out_fact.shape,
    ) else {
        return Ok(None);
    };
    let [n, k_dims @ ..] = weight.shape() else {
        return Ok(None);
    };
    let k: usize = k_dims.iter().product();
    if !k.is_multiple_of(BLOCK) || storage.value().len() != n * k / BLOCK * BLOCK_BYTES {
        return Ok(None);
    }
    if layout.k_axes != k_dims.len() {
        return Ok(None);
    }
    Ok(Some(Q4Product {
        x_input,
        op: Q4MatMul {
            weights: Arc::new(Q4Weights::from_blocks(storage.value().as_bytes())),
            n: *n,
            k,
            k_axes: layout.k_axes,
            out_axes: layout.out_axes,
        },
    }))
}

/// A replacement found by [`q4_product`].
struct Q4Product {
    /// Which input of the einsum is the activation.
    x_input: usize,
    op: Q4MatMul,
}

/// How a row-product einsum `x, w -> out` lays out its axes.
#[derive(Debug, PartialEq)]
struct Layout {
    k_axes: usize,
    out_axes: Vec<OutAxis>,
}

impl Layout {
    /// The layout of the einsum `xs, ws -> os` if it is `x [rows.., K..], w [N, K..] -> [rows.., N]`: the
    /// weight's first axis is the output's last, its other axes are the activation's last
    /// ones in the same order and are summed, and the activation's other axes reach the output
    /// in order (axes of size 1 may be added or dropped).
    fn of(xs: &[char], ws: &[char], os: &[char], x: &[TDim], out: &[TDim]) -> Option<Layout> {
        if xs.len() != x.len() || os.len() != out.len() || ws.len() < 2 {
            return None;
        }
        let n_axis = ws[0];
        let k_axes = &ws[1..];
        if xs.len() < k_axes.len() || &xs[xs.len() - k_axes.len()..] != k_axes {
            return None;
        }
        if os.last() != Some(&n_axis) || xs.contains(&n_axis) {
            return None;
        }
        if k_axes.iter().any(|a| os.contains(a)) {
            return None;
        }
        let row_axes = &xs[..xs.len() - k_axes.len()];
        let is_one = |d: &TDim| *d == TDim::Val(1);
        // The activation's row axes that are not 1 must reach the output in order; the
        // output's other axes must be 1 (added, or taken from an activation axis of 1).
        let kept: Vec<char> = row_axes
            .iter()
            .zip(x)
            .filter(|(_, d)| !is_one(d))
            .map(|(a, _)| *a)
            .collect();
        let mut out_axes = Vec::with_capacity(os.len());
        let mut shown = Vec::new();
        for (a, d) in os[..os.len() - 1].iter().zip(out) {
            match row_axes.iter().position(|r| r == a) {
                Some(i) => {
                    if !is_one(&x[i]) {
                        shown.push(*a);
                    }
                    out_axes.push(OutAxis::Input(i));
                }
                None if is_one(d) => out_axes.push(OutAxis::One),
                None => return None,
            }
        }
        if shown != kept {
            return None;
        }
        out_axes.push(OutAxis::Output);
        Some(Layout {
            k_axes: k_axes.len(),
            out_axes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Random `Q4_0` weights `[n, k]` and their f32 values.
    fn weights(n: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
        let codes = values(n * k, 7);
        let scales = values(n * k / BLOCK, 9);
        let mut bytes = Vec::new();
        let mut dense = vec![0f32; n * k];
        for row in 0..n {
            for b in 0..k / BLOCK {
                let d = f16::from_f32(scales[row * k / BLOCK + b] * 0.1);
                bytes.extend_from_slice(&d.to_bits().to_le_bytes());
                let q: Vec<u8> = (0..BLOCK)
                    .map(|i| ((codes[row * k + b * BLOCK + i] + 1.0) * 8.0).min(15.0) as u8)
                    .collect();
                for i in 0..16 {
                    bytes.push(q[i] | (q[i + 16] << 4));
                }
                for i in 0..BLOCK {
                    dense[row * k + b * BLOCK + i] = (f32::from(q[i]) - 8.0) * d.to_f32();
                }
            }
        }
        (bytes, dense)
    }

    #[test]
    fn every_path_matches_the_dense_product() {
        let (n, k) = (37, 96);
        let (bytes, dense) = weights(n, k);
        for rows in [1, 2, 3, 4, 5, 9] {
            let x = values(rows * k, rows as u32);
            let expected: Vec<f32> = (0..rows * n)
                .map(|i| {
                    let (r, j) = (i / n, i % n);
                    (0..k).map(|c| x[r * k + c] * dense[j * k + c]).sum()
                })
                .collect();
            let w = Q4Weights::from_blocks(&bytes);
            let mut out = vec![0f32; rows * n];
            multiply(&w, n, k, &x, rows, &mut out);
            let mut portable = vec![0f32; rows * n];
            multiply_portable(&w, n, k, &x, rows, &mut portable);
            for ((a, p), e) in out.iter().zip(&portable).zip(&expected) {
                assert!((a - e).abs() < 1e-4 && (p - e).abs() < 1e-4, "{a} {p} {e}");
            }
        }
    }

    /// [`Layout::of`] for `expression`, activation first.
    fn layout(expression: &str, x: &[TDim], out: &[TDim]) -> Option<Layout> {
        let (inputs, output) = expression.split_once("->").unwrap();
        let (xs, ws) = inputs.split_once(',').unwrap();
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        Layout::of(&chars(xs), &chars(ws), &chars(output), x, out)
    }

    #[test]
    fn layouts_of_the_models_einsums() {
        let d = |v: &[i64]| v.iter().map(|&v| TDim::Val(v)).collect::<Vec<_>>();
        let s = TDim::Sym(SymbolScope::default().sym("S"));
        // SmolLM2: [1, S, 576] . [960, 576] -> [1, S, 960]
        let l = layout(
            "abk,nk->abn",
            &[1.into(), s.clone(), 576.into()],
            &[1.into(), s.clone(), 960.into()],
        )
        .unwrap();
        assert_eq!(
            l.out_axes,
            vec![OutAxis::Input(0), OutAxis::Input(1), OutAxis::Output]
        );
        // o_proj: [S, 3, 3, 64] . [576, 3, 3, 64] -> [1, S, 576]
        let l = layout(
            "bdck,ndck->abn",
            &[s.clone(), 3.into(), 3.into(), 64.into()],
            &[1.into(), s.clone(), 576.into()],
        )
        .unwrap();
        assert_eq!(
            (l.k_axes, l.out_axes),
            (3, vec![OutAxis::One, OutAxis::Input(0), OutAxis::Output])
        );
        // A dropped axis of 1: [1, S, 576] . [3072, 576] -> [S, 3072]
        assert!(layout(
            "abk,nk->bn",
            &[1.into(), s.clone(), 576.into()],
            &[s.clone(), 3072.into()]
        )
        .is_some());
        // Whisper's projection: [1, 1, 384] . [51864, 384] -> [1, 51864]
        assert!(layout("abk,nk->an", &d(&[1, 1, 384]), &d(&[1, 51864])).is_some());
        // Not row products: transposed weight, rows reordered, a dropped axis that is not 1.
        assert!(layout(
            "abk,kn->abn",
            &[1.into(), s.clone(), 576.into()],
            &[1.into(), s.clone(), 960.into()]
        )
        .is_none());
        assert!(layout("abk,nk->ban", &d(&[2, 3, 32]), &d(&[3, 2, 8])).is_none());
        assert!(layout("abk,nk->an", &d(&[1, 3, 32]), &d(&[1, 8])).is_none());
    }
}
