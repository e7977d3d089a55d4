"""The onnxruntime side of `cargo run --release -p weir-ml --example bench_prefill`: the same
model, system prefix (run once, its cache kept), user turn fed as one chunk (timed) and four
single-token decode steps (timed), 1 intra-op thread, medians.

    target/bench-venv/bin/python bench/prefill_ort.py [--runs 9] [--model-dir models/smollm2-135m]
        [--dump logits.f32]

`--dump` writes the last prompt token's logits (little-endian f32), comparable with the Rust
example's `--dump`.
"""

import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SYSTEM = "You are a helpful assistant running on a small device. Answer briefly."  # DEFAULT_SYSTEM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--model-dir", default="models/smollm2-135m")
    ap.add_argument("--user", default="What is the capital of France?")
    ap.add_argument("--dump")
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = False
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(os.path.join(args.model_dir, "model.onnx"), so,
                                providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids
    system = enc(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n")
    user = enc(f"<|im_start|>user\n{args.user}<|im_end|>\n<|im_start|>assistant\n")
    past_names = [i.name for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    out_names = [o.name for o in sess.get_outputs()]

    def feed(state, ids):
        past, pos = state
        total = pos + len(ids)
        inputs = {
            "input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, total), np.int64),
            "position_ids": np.arange(pos, total, dtype=np.int64).reshape(1, -1),
            **past,
        }
        out = dict(zip(out_names, sess.run(None, inputs)))
        new = {n: out["present." + n[len("past_key_values."):]] for n in past_names}
        return (new, total), out["logits"][0, -1]

    empty = ({n: np.zeros((1, shapes[n][1], 0, shapes[n][3]), np.float32) for n in past_names}, 0)
    prefix, _ = feed(empty, system)
    prompt, decode, last = [], [], None
    for run in range(args.runs + 1):
        t = time.perf_counter()
        state, logits = feed(prefix, user)
        prompt_ms = (time.perf_counter() - t) * 1e3
        nxt = int(np.argmax(logits))
        t = time.perf_counter()
        for _ in range(4):
            state, lg = feed(state, [nxt])
            nxt = int(np.argmax(lg))
        decode_ms = (time.perf_counter() - t) * 1e3 / 4
        if run > 0:
            prompt.append(prompt_ms)
            decode.append(decode_ms)
        last = logits
    p, d = statistics.median(prompt), statistics.median(decode)
    print(f"onnxruntime {ort.__version__} | system prefix {len(system)} tok | user turn {len(user)} tok: "
          f"prompt {p:.1f} ms ({p / len(user):.1f} ms/token) | decode {d:.1f} ms/token | "
          f"prompt/decode-step {p / d:.2f} | top-1 {int(np.argmax(last))}")
    if args.dump:
        np.asarray(last, np.float32).tofile(args.dump)


if __name__ == "__main__":
    main()
