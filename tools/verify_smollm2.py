#!/usr/bin/env python3
"""Verify a converted SmolLM2-135M-Instruct ONNX model (tools/convert_smollm2.py) with
onnxruntime (1 thread): tokenizer round trip, greedy ChatML answer containing "Paris",
KV-cache continuation == single full pass (1e-3), an independent numpy reference forward
pass read straight from the GGUF (llama.cpp row order + interleaved RoPE), and timings.
Exits non-zero with a message naming the failed check."""
import argparse
import json
import os
import sys
import time

import numpy as np

SYSTEM = "You are a helpful assistant. Answer briefly."
USER = "What is the capital of France?"
BRIEF_PROMPT = ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
                "What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def log(msg):
    print(f"smollm2: {msg}", flush=True)


def fail(msg):
    print(f"smollm2: VERIFY FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


class Lm:
    def __init__(self, path, threads=1):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        ins = {i.name: i for i in self.sess.get_inputs()}
        self.n_layer = sum(1 for n in ins if n.endswith(".key"))
        shp = ins["past_key_values.0.key"].shape
        self.n_kv, self.hd = int(shp[1]), int(shp[3])
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def empty_cache(self):
        z = np.zeros((1, self.n_kv, 0, self.hd), np.float32)
        return [(z, z) for _ in range(self.n_layer)]

    def run(self, ids, cache):
        past = cache[0][0].shape[2]
        n = len(ids)
        feed = {
            "input_ids": np.asarray([ids], np.int64),
            "attention_mask": np.ones((1, past + n), np.int64),
            "position_ids": np.arange(past, past + n, dtype=np.int64)[None, :],
        }
        for i, (k, v) in enumerate(cache):
            feed[f"past_key_values.{i}.key"] = k
            feed[f"past_key_values.{i}.value"] = v
        outs = dict(zip(self.out_names, self.sess.run(None, feed)))
        new = [(outs[f"present.{i}.key"], outs[f"present.{i}.value"]) for i in range(self.n_layer)]
        return outs["logits"], new


def numpy_reference(gguf_path, ids):
    """Independent forward pass: weights dequantized by the gguf package, llama.cpp's own
    row order with interleaved (adjacent-pair) RoPE, fp32 tied output layer."""
    from gguf import GGUFReader
    from gguf import quants
    r = GGUFReader(gguf_path)
    T = {t.name: t for t in r.tensors}
    fld = lambda k: r.fields[k].contents()
    nl = int(fld("llama.block_count")); d = int(fld("llama.embedding_length"))
    nh = int(fld("llama.attention.head_count")); nkv = int(fld("llama.attention.head_count_kv"))
    eps = float(fld("llama.attention.layer_norm_rms_epsilon")); base = float(fld("llama.rope.freq_base"))
    hd = d // nh

    def W(name):
        t = T[name]
        w = quants.dequantize(np.asarray(t.data), t.tensor_type)
        return np.asarray(w, np.float32).reshape([int(s) for s in reversed(t.shape)])

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    n = len(ids)
    pos = np.arange(n)
    theta = base ** (-np.arange(0, hd, 2) / hd)
    ang = pos[:, None] * theta[None, :]  # [n, hd/2]
    c, s = np.cos(ang), np.sin(ang)

    def rope_interleaved(x):  # x [n, heads, hd], pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c[:, None, :] - x1 * s[:, None, :]
        out[..., 1::2] = x0 * s[:, None, :] + x1 * c[:, None, :]
        return out

    emb = W("token_embd.weight")
    x = emb[ids].astype(np.float64)
    causal = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(nl):
        b = f"blk.{i}"
        h = rms(x, W(f"{b}.attn_norm.weight"))
        q = (h @ W(f"{b}.attn_q.weight").T).reshape(n, nh, hd)
        k = (h @ W(f"{b}.attn_k.weight").T).reshape(n, nkv, hd)
        v = (h @ W(f"{b}.attn_v.weight").T).reshape(n, nkv, hd)
        q, k = rope_interleaved(q), rope_interleaved(k)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=1); v = np.repeat(v, rep, axis=1)
        sc = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + causal
        sc = np.exp(sc - sc.max(-1, keepdims=True)); sc /= sc.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", sc, v).reshape(n, d)
        x = x + o @ W(f"{b}.attn_output.weight").T
        h = rms(x, W(f"{b}.ffn_norm.weight"))
        g = h @ W(f"{b}.ffn_gate.weight").T
        u = h @ W(f"{b}.ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ W(f"{b}.ffn_down.weight").T
    x = rms(x, W("output_norm.weight"))
    return (x @ emb.T).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--gguf", help="also run the independent numpy reference from this GGUF")
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--report", help="write measured numbers to this JSON file")
    args = ap.parse_args()

    # ---------------------------------------------------------------- tokenizer
    try:
        from tokenizers import Tokenizer
    except ImportError:
        fail("python package 'tokenizers' is not installed")
    tok = Tokenizer.from_file(os.path.join(args.dir, "tokenizer.json"))
    ids = tok.encode(BRIEF_PROMPT, add_special_tokens=False).ids
    log(f"tokenizer: {len(ids)} ids: {ids}")
    if ids[0] != 1 or ids.count(1) != 3 or ids.count(2) != 2:
        fail("tokenizer: <|im_start|>=1 / <|im_end|>=2 not found as single special tokens")
    back = tok.decode(ids, skip_special_tokens=False)
    if back != BRIEF_PROMPT:
        fail(f"tokenizer: round trip differs: {back!r}")
    pieces = tok.encode(BRIEF_PROMPT, add_special_tokens=False).tokens
    if "ĠFrance" not in pieces or "Ġcapital" not in pieces:
        fail(f"tokenizer: unexpected pieces {pieces}")
    for text in ["Hello world! 12345 naïve café — ok?\n\n  indented", "日本語のテキスト"]:
        e = tok.encode(text, add_special_tokens=False)
        if tok.decode(e.ids) != text:
            fail(f"tokenizer: round trip of {text!r}")
    log("tokenizer: special tokens and round trips OK")

    gen = json.load(open(os.path.join(args.dir, "generation.json")))
    eos = set(gen["eos_token_id"])

    # ---------------------------------------------------------------- model
    lm = Lm(os.path.join(args.dir, "model.onnx"), threads=1)
    sys_part = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
    rest = f"<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n"
    sys_ids = tok.encode(sys_part, add_special_tokens=False).ids
    rest_ids = tok.encode(rest, add_special_tokens=False).ids
    full_ids = sys_ids + rest_ids
    if tok.encode(sys_part + rest, add_special_tokens=False).ids != full_ids:
        fail("tokenizer: the prompt does not split at the turn boundary")

    # warm up, then time a full prompt pass
    lm.run(full_ids, lm.empty_cache())
    prompt_ms = float("inf")
    for _ in range(3):  # best of 3: the machine may be busy
        t0 = time.perf_counter()
        full_logits, _ = lm.run(full_ids, lm.empty_cache())
        prompt_ms = min(prompt_ms, (time.perf_counter() - t0) * 1000)

    # cached system prompt, then the user turn with past
    t0 = time.perf_counter()
    l1, cache = lm.run(sys_ids, lm.empty_cache())
    sys_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    l2, cache = lm.run(rest_ids, cache)
    rest_ms = (time.perf_counter() - t0) * 1000
    chunked = np.concatenate([l1, l2], axis=1)
    diff = float(np.abs(chunked - full_logits).max())
    log(f"kv cache: max |two-chunk logits - full-pass logits| = {diff:.2e} "
        f"(over {len(full_ids)} positions, past={len(sys_ids)})")
    if not diff < 1e-3:
        fail(f"kv cache: chunked logits differ from the full pass by {diff}")

    # greedy decode
    out, step_ms = [], []
    nxt = int(np.argmax(l2[0, -1]))
    while True:
        out.append(nxt)
        if nxt in eos or len(out) >= args.max_new:
            break
        t0 = time.perf_counter()
        lg, cache = lm.run([nxt], cache)
        step_ms.append((time.perf_counter() - t0) * 1000)
        nxt = int(np.argmax(lg[0, -1]))
    text = tok.decode([t for t in out if t not in eos])
    log(f"prompt ids ({len(full_ids)}): {full_ids}")
    log(f"answer ids: {out}")
    log(f"answer: {text!r}")
    if "Paris" not in text:
        fail(f"greedy answer does not contain 'Paris': {text!r}")
    decode_ms = float(np.median(step_ms)) if step_ms else float("nan")
    log(f"onnxruntime 1 thread: full prompt ({len(full_ids)} tokens) {prompt_ms:.0f} ms (best of 3); "
        f"system prefix ({len(sys_ids)}) {sys_ms:.0f} ms + user turn ({len(rest_ids)}) {rest_ms:.0f} ms; "
        f"decode {decode_ms:.1f} ms/token (median of {len(step_ms)})")

    ref_info = None
    if args.gguf:
        ref = numpy_reference(args.gguf, full_ids)
        onx = full_logits[0]
        top_ref, top_onx = ref.argmax(-1), onx.argmax(-1)
        agree = float((top_ref == top_onx).mean())
        cos = float(np.mean([np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(ref, onx)]))
        log(f"numpy reference (GGUF order, interleaved RoPE, fp32 tied head): top-1 agreement "
            f"{agree:.3f}, mean logit cosine {cos:.4f}")
        if cos < 0.98 or agree < 0.8:
            fail("onnx logits disagree with the numpy reference")
        ref_info = {"top1_agreement": agree, "mean_cosine": cos}

    if args.report:
        json.dump({"prompt_tokens": len(full_ids), "prompt_ms": prompt_ms, "system_tokens": len(sys_ids),
                   "system_ms": sys_ms, "user_turn_tokens": len(rest_ids), "user_turn_ms": rest_ms,
                   "decode_ms_per_token": decode_ms, "kv_max_abs_diff": diff, "answer": text,
                   "answer_ids": out, "reference": ref_info}, open(args.report, "w"), indent=1)
    log("verify OK")


if __name__ == "__main__":
    main()
