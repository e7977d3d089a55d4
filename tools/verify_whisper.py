#!/usr/bin/env python3
"""Verify the converted Whisper tiny.en ONNX files by transcribing real recordings.

Runs encoder.onnx -> cross_kv.onnx -> decoder.onnx (greedy, KV cache) in onnxruntime on the
pocketsphinx-testdata recordings, twice per file: with the audio trimmed (encoder window =
the audio itself, rounded up to a multiple of 320 samples) and padded with zeros to 30 s.
Prints transcripts, references, word error rates and timings. Exits non-zero if the trimmed
or padded transcript of the chosen file (--check) has a WER above --max-wer, or if any
recording's padded or trimmed WER is above --max-wer-any.

usage: verify_whisper.py MODEL_DIR TESTDATA_DIR [--check NAME] [--max-wer 0.3] [--json OUT]
TESTDATA_DIR is .../usr/share/pocketsphinx/test/data
"""
import argparse
import json
import os
import re
import sys
import time
import wave

import numpy as np
import onnxruntime as ort

SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256
N_LAYER, N_HEAD, D_HEAD = 4, 6, 64
MAX_SAMPLES = 480000
MAX_NEW_TOKENS = 224


def read_wav(path):
    with wave.open(path) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def load_tokens(path):
    return [bytes.fromhex(line.strip()) for line in open(path)]


def decode_text(ids, table):
    return b"".join(table[i] for i in ids if i < EOT).decode("utf-8", errors="replace").strip()


NUMBERS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
           "7": "seven", "8": "eight", "9": "nine", "10": "ten"}


def words(text):
    text = text.lower().replace("mr.", "mister").replace("-", " ")
    ws = re.sub(r"[^a-z0-9' ]", " ", text).split()
    return [NUMBERS.get(w, w) for w in ws]


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(1, len(r))


class Whisper:
    def __init__(self, model_dir, threads=1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        mk = lambda n: ort.InferenceSession(os.path.join(model_dir, n), opts,
                                            providers=["CPUExecutionProvider"])
        self.encoder, self.cross, self.decoder = mk("encoder.onnx"), mk("cross_kv.onnx"), mk("decoder.onnx")
        self.tokens = load_tokens(os.path.join(model_dir, "tokens.txt"))

    def transcribe(self, audio, pad_to=None):
        n = len(audio)
        target = -(-n // 320) * 320  # round up to a multiple of 320
        if pad_to:
            target = max(target, pad_to)  # zero-pad up to at least pad_to samples
        target = min(max(target, 320 * 2), MAX_SAMPLES)
        x = np.zeros((1, target), np.float32)
        x[0, :min(n, target)] = audio[:target]
        t0 = time.perf_counter()
        (enc,) = self.encoder.run(None, {"audio": x})
        t1 = time.perf_counter()
        cross = self.cross.run(None, {"encoder_out": enc})
        t2 = time.perf_counter()
        feeds = {}
        for i in range(N_LAYER):
            feeds[f"cross_k.{i}"] = cross[2 * i]
            feeds[f"cross_v.{i}"] = cross[2 * i + 1]
            feeds[f"past_k.{i}"] = np.zeros((1, N_HEAD, 0, D_HEAD), np.float32)
            feeds[f"past_v.{i}"] = np.zeros((1, N_HEAD, 0, D_HEAD), np.float32)
        out_names = ["logits"] + [f"present_{kv}.{i}" for i in range(N_LAYER) for kv in "kv"]
        step_in = [SOT, NO_TIMESTAMPS]
        ids = []
        steps = []
        while len(ids) < MAX_NEW_TOKENS:
            feeds["tokens"] = np.array([step_in], np.int64)
            s0 = time.perf_counter()
            res = self.decoder.run(out_names, feeds)
            steps.append(time.perf_counter() - s0)
            nxt = int(np.argmax(res[0][0]))
            for j, name in enumerate(out_names[1:]):
                feeds[name.replace("present", "past")] = res[1 + j]
            if nxt == EOT:
                break
            ids.append(nxt)
            step_in = [nxt]
        return {
            "ids": ids,
            "text": decode_text(ids, self.tokens),
            "samples": target,
            "frames": int(enc.shape[1]),
            "encoder_ms": 1000 * (t1 - t0),
            "cross_ms": 1000 * (t2 - t1),
            "prompt_ms": 1000 * steps[0],
            "step_ms": 1000 * float(np.median(steps[1:])) if len(steps) > 1 else 0.0,
            "n_steps": len(steps),
        }


MIN_WINDOW = 240000  # 15 s: the documented minimum encoder window (see WHISPER_ONNX.md)

# (name, samples fed to the encoder, counted for pass/fail)
MODES = (
    ("trimmed", None, False),          # the audio itself, rounded up to 320: reported only
    ("min15s", MIN_WINDOW, True),      # the rule for Rust: max(audio, 15 s), zero-padded
    ("padded30", MAX_SAMPLES, True),   # whisper's own 30 s window
)


def references(data_dir):
    refs = {}
    for sub, fname in (("librivox", "transcription"), ("cards", "cards.transcription")):
        path = os.path.join(data_dir, sub, fname)
        for line in open(path):
            m = re.match(r"\s*<s>(.*)</s>\s*\((.*)\)", line)
            if m:
                refs[os.path.join(sub, m.group(2).strip() + ".wav")] = m.group(1).strip()
    return refs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("data_dir")
    ap.add_argument("--check", default="librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
    ap.add_argument("--max-wer", type=float, default=0.30)
    ap.add_argument("--max-wer-any", type=float, default=0.50)
    ap.add_argument("--files", nargs="*", help="subset of recordings (relative to data_dir)")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()

    w = Whisper(args.model_dir)
    refs = references(args.data_dir)
    files = args.files or sorted(refs)
    if args.check not in files:
        files.insert(0, args.check)
    results = {}
    failures = []
    for rel in files:
        audio = read_wav(os.path.join(args.data_dir, rel))
        ref = refs[rel]
        row = {"seconds": len(audio) / 16000.0, "reference": ref}
        for mode, pad, checked in MODES:
            r = w.transcribe(audio, pad)
            r["wer"] = wer(ref, r["text"])
            row[mode] = r
            print(f"whisper: {rel} [{mode:8s} {r['samples'] / 16000:5.2f} s, {r['frames']:4d} frames]"
                  f" WER {r['wer']:.2f}  enc {r['encoder_ms']:.0f} ms, cross {r['cross_ms']:.0f} ms,"
                  f" prompt {r['prompt_ms']:.1f} ms, {r['step_ms']:.1f} ms/token:  {r['text'][:200]!r}")
            limit = args.max_wer if rel == args.check else args.max_wer_any
            if checked and r["wer"] > limit:
                failures.append(f"{rel} {mode}: WER {r['wer']:.2f} > {limit}")
        print(f"whisper: {rel} reference: {ref!r}")
        results[rel] = row
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    for mode, _, _ in MODES:
        mean = np.mean([r[mode]["wer"] for r in results.values()])
        print(f"whisper: mean WER {mode}: {mean:.3f} over {len(results)} recordings")
    if failures:
        for f in failures:
            print(f"whisper: VERIFY FAILED: {f}", file=sys.stderr)
        return 1
    print("whisper: verification passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
