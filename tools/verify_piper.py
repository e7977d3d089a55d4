"""Check that Piper's parts A and B, joined as Weir joins them, equal the original voice.

Runs the original .onnx and the two parts in onnxruntime (1 thread) with the noise terms at
zero (scales = [0, length_scale, 0]), so both are deterministic, and compares the audio.
Writes a report and the reference audio (little-endian f32) that Weir's tract test compares
against.
"""

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort

# espeak-ng's IPA for "The quick brown fox jumps over the lazy dog.", with Piper's
# punctuation convention (the clause terminator kept as a phoneme).
PHONEMES = "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ."


def ids_of(phonemes, table):
    ids = [table["^"][0], table["_"][0]]
    for ch in phonemes:
        if ch in table:
            ids += [table[ch][0], table["_"][0]]
    ids.append(table["$"][0])
    return ids


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--phonemes", type=int, default=256)
    a = ap.parse_args()
    cfg = json.load(open(a.config))
    ids = ids_of(PHONEMES, cfg["phoneme_id_map"])
    n = a.phonemes
    length_scale = float(cfg["inference"]["length_scale"])

    full = session(a.onnx)
    want = full.run(
        None,
        {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, length_scale, 0.0], dtype=np.float32),
        },
    )[0].reshape(-1)

    pa, pb = session(f"{a.dir}/part_a.onnx"), session(f"{a.dir}/part_b.onnx")
    padded = np.zeros((1, n), dtype=np.int64)
    padded[0, : len(ids)] = ids
    dur, m_p, logs_p = pa.run(
        ["durations", "m_p", "logs_p"],
        {
            "input": padded,
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, length_scale, 0.0], dtype=np.float32),
            "dp_noise": np.zeros((1, 2, n), dtype=np.float32),
        },
    )
    reps = dur[0, 0, : len(ids)].astype(np.int64)
    if (dur[0, 0, len(ids) :] != 0).any():
        sys.exit("verify_piper: padding got a non-zero duration")
    z_p = np.repeat(m_p[:, :, : len(ids)], reps, axis=2)
    frames = z_p.shape[2]
    got = pb.run(None, {"z_p": z_p, "y_mask": np.ones((1, 1, frames), dtype=np.float32)})[0]
    got = got.reshape(-1)

    if got.shape != want.shape:
        sys.exit(f"verify_piper: length {got.shape} != original {want.shape}")
    err = float(np.abs(got - want).max())
    rms = float(np.sqrt(np.mean(want**2)))
    report = {
        "phonemes": PHONEMES,
        "ids": ids,
        "durations": reps.tolist(),
        "frames": int(frames),
        "samples": int(want.shape[0]),
        "rms": rms,
        "max_abs_err_parts_vs_original": err,
        "length_scale": length_scale,
    }
    json.dump(report, open(f"{a.dir}/verify.json", "w"), indent=1)
    want.astype("<f4").tofile(f"{a.dir}/reference.f32")
    print(
        f"verify_piper: {len(ids)} ids -> {frames} frames, {want.shape[0]} samples, "
        f"rms {rms:.4f}, max |parts - original| = {err:.2e}"
    )
    if err > 1e-3 or rms < 0.01:
        sys.exit("verify_piper: the parts do not reproduce the original voice")


if __name__ == "__main__":
    main()
