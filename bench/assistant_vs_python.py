#!/usr/bin/env python3
"""Weir's voice assistant against the same pipeline in Python + onnxruntime, side by side.

    python3 bench/assistant_vs_python.py [--rounds 7] [--input F.wav] [--model-cache warm|cold]
                                         [--no-build]

Builds the launcher (`cargo build --release -p weir`) and the Python baseline's venv
(`tools/bench-python-setup.sh`), then runs, alternately and as fresh processes, `weir run
graphs/voice_assistant.yaml` and `bench/python/assistant.py` on the same recording followed
by silence (the microphone stays open), replayed at real-time pace in 20 ms frames. Both are
timed the same way, from outside: this script stamps every line each process writes as it
arrives, and reads the peak RSS from the kernel when the process ends (wait4).

  all models loaded      process start -> the moment playback starts (Weir: the engine's
                         "graph clock started" log line; Python: its "ready" line). Weir
                         reads its prepared models from its model cache (filled by one
                         untimed run first); `--model-cache cold` turns the cache off
  end of speech          playback start + the time of the recording's last loud sample
                         (|x| > 0.01, like examples/bench_assistant.rs)
  -> transcript          arrival of the transcript line (Weir: `heard`, text.print json)
  -> first answer token  arrival of the first answer token line (Weir: `answer`)
  -> first spoken audio  arrival of the line saying the first audio block of the answer was
                         synthesized (Weir: speech.tts's debug line; Python: its "audio"
                         line); both speak the Piper voice, phrase by phrase as tokens stream
  decode per token       (last token - first token) / (tokens - 1), from arrival times
  peak RSS               ru_maxrss of the process

Both sides also report internal timings (Weir: its debug log; Python: a timings line); they
are printed as a breakdown, not used for the headline figures. Stdlib only.
"""

import argparse
import array
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPH = "graphs/voice_assistant.yaml"
WORK = "target/bench-assistant"
VENV_PY = "target/bench-venv/bin/python"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def prepare_input(src, tail_s):
    """The recording followed by `tail_s` of silence, and the time of its last loud
    sample (the end of speech)."""
    with wave.open(src, "rb") as w:
        params = w.getparams()
        raw = w.readframes(w.getnframes())
    if params.sampwidth != 2:
        raise SystemExit(f"{src}: 16-bit PCM expected")
    samples = array.array("h", raw)
    if sys.byteorder != "little":
        samples.byteswap()
    limit = 0.01 * 32768
    last = max((i for i, s in enumerate(samples) if abs(s) > limit), default=0)
    speech_end = (last // params.nchannels) / params.framerate
    os.makedirs(os.path.join(ROOT, WORK), exist_ok=True)
    out = os.path.join(ROOT, WORK, "input.wav")
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(raw + b"\0" * (int(tail_s * params.framerate) * params.nchannels * 2))
    return out, speech_end, len(samples) / params.nchannels / params.framerate


def run(cmd, env):
    """Runs `cmd`; every stdout/stderr line with its arrival time; the peak RSS (MiB)."""
    lines = {"out": [], "err": []}

    def read(pipe, into):
        for line in iter(pipe.readline, b""):
            into.append((time.monotonic(), line.decode("utf-8", "replace").rstrip("\n")))

    spawned = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    readers = [threading.Thread(target=read, args=(p.stdout, lines["out"])),
               threading.Thread(target=read, args=(p.stderr, lines["err"]))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    return spawned, lines, p.returncode, usage.ru_maxrss / 1024.0


def kv(line, key):
    m = re.search(rf"\b{key}=([0-9.]+)(ms|s|µs)?", line)
    if not m:
        return None
    v = float(m.group(1))
    return v * {"ms": 1.0, "s": 1e3, "µs": 1e-3, None: 1.0}[m.group(2)]


def parse_weir(lines):
    r = {"tokens": [], "internal": {}, "load_ms": {}}
    for t, line in lines["err"]:
        line = ANSI.sub("", line)
        if "graph clock started" in line and "ready" not in r:
            r["ready"] = t
        elif "transcribed segment" in line:
            r["internal"]["whisper_ms"] = (kv(line, "encoder_ms") or 0) + (kv(line, "decoder_ms") or 0)
            r["internal"]["whisper_encoder_ms"] = kv(line, "encoder_ms")
            r["internal"]["whisper_decoder_ms"] = kv(line, "decoder_ms")
        elif "first audio of the answer" in line and "audio" not in r:
            r["audio"] = t
        elif "llm.chat answer" in line:
            r["internal"]["prompt_ms"] = kv(line, "prompt_ms")
            r["internal"]["prompt_tokens"] = kv(line, "prompt_tokens")
            r["internal"]["decode_ms_per_token"] = kv(line, "decode_ms_per_token")
        elif "model loaded" in line:
            m = re.search(r"path=(\S+)", line)
            if m:
                r["load_ms"][os.path.basename(m.group(1))] = kv(line, "load_time")
    for t, line in lines["out"]:
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("type") == "text" and "transcript" not in r:
            r["transcript"], r["text"] = t, j.get("text", "")
        elif j.get("type") == "token":
            r["tokens"].append((t, j.get("text", "")))
    return r


def parse_python(lines):
    r = {"tokens": [], "internal": {}, "load_ms": {}}
    for t, line in lines["out"]:
        try:
            j = json.loads(line)
        except ValueError:
            continue
        e = j.get("event")
        if e == "ready":
            r["ready"] = t
        elif e == "transcript" and "transcript" not in r:
            r["transcript"], r["text"] = t, j["text"]
        elif e == "token":
            r["tokens"].append((t, j["text"]))
        elif e == "audio" and "audio" not in r:
            r["audio"] = t
        elif e == "timings":
            w, c = j["whisper"], j["llm"]
            r["internal"] = {
                "whisper_ms": w["encoder_ms"] + w["decoder_ms"],
                "whisper_encoder_ms": w["encoder_ms"],
                "whisper_decoder_ms": w["decoder_ms"],
                "prompt_ms": c.get("prompt_ms"),
                "prompt_tokens": c.get("prompt_tokens"),
                "decode_ms_per_token": c.get("decode_ms_per_token"),
            }
            r["load_ms"] = j["load_ms"]
    return r


def figures(spawned, r, speech_end, rss):
    """The headline figures of one run (None where the run did not get that far)."""
    f = {"rss_mib": rss, "text": r.get("text"), "answer": "".join(x for _, x in r["tokens"]),
         "models_ms": {k: v for k, v in r["load_ms"].items() if v is not None}}
    if "ready" not in r:
        return f
    f["load_s"] = r["ready"] - spawned
    eos = r["ready"] + speech_end
    if "transcript" in r:
        f["transcript_ms"] = (r["transcript"] - eos) * 1e3
    if "audio" in r:
        f["first_audio_ms"] = (r["audio"] - eos) * 1e3
    toks = [t for t, _ in r["tokens"]]
    if toks:
        f["first_token_ms"] = (toks[0] - eos) * 1e3
        if "transcript" in r:
            f["transcript_to_token_ms"] = (toks[0] - r["transcript"]) * 1e3
    if len(toks) > 1:
        f["decode_ms"] = (toks[-1] - toks[0]) * 1e3 / (len(toks) - 1)
        f["tokens"] = len(toks)
    for k, v in r["internal"].items():
        f["int_" + k] = v
    return f


def median(runs, key):
    v = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(v) if v else None


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.0f} MiB"
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms"


ROWS = [
    ("all models loaded (process start -> playback)", "load_s", "s"),
    ("end of speech -> transcript", "transcript_ms", "ms"),
    ("end of speech -> first answer token", "first_token_ms", "ms"),
    ("end of speech -> first spoken audio", "first_audio_ms", "ms"),
    ("decode per token (stdout arrivals)", "decode_ms", "ms"),
    ("peak RSS", "rss_mib", "MiB"),
]
BREAKDOWN = [
    ("transcript -> first answer token", "transcript_to_token_ms", "ms"),
    ("Whisper on the utterance (encoder + decoder), internal", "int_whisper_ms", "ms"),
    ("  of which encoder + cross K/V", "int_whisper_encoder_ms", "ms"),
    ("  of which decoder loop", "int_whisper_decoder_ms", "ms"),
    ("SmolLM2 prompt (user turn, system prefix cached), internal", "int_prompt_ms", "ms"),
    ("SmolLM2 decode per token, internal", "int_decode_ms_per_token", "ms"),
]


def table(rows, weir, py):
    out = ["| | Weir | Python + onnxruntime | Weir / Python |", "|---|---|---|---|"]
    for label, key, unit in rows:
        w = median(weir, key) if key else None
        p = median(py, key) if key else None
        ratio = f"{w / p:.2f}x" if w is not None and p else "n/a"
        out.append(f"| {label} | {fmt(w, unit)} | {fmt(p, unit)} | {ratio} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="runs of each side (default 7)")
    ap.add_argument("--input", default="data/synth/question_44k_stereo.wav")
    ap.add_argument("--tail-s", type=float, default=2.0,
                    help="silence after the recording, seconds (default 2; must exceed "
                         "the VAD's min_silence_ms)")
    ap.add_argument("--python-arena", action="store_true",
                    help="run onnxruntime with its CPU memory arena (off by default: the "
                         "stricter, lighter baseline)")
    ap.add_argument("--weir-set", action="append", default=[], metavar="NODE.OPTION=VALUE",
                    help="an extra --set for Weir, e.g. vad.draft_silence_ms=0 (no speculation)")
    ap.add_argument("--model-cache", choices=["warm", "cold"], default="warm",
                    help="warm (default): Weir's model cache (target/bench-model-cache) is "
                         "filled by one untimed run first, as on a device's second start; "
                         "cold: WEIR_MODEL_CACHE=off, every run prepares the ONNX files")
    ap.add_argument("--no-build", action="store_true", help="use the existing builds")
    ap.add_argument("--check", action="store_true",
                    help="fail unless every run heard 'what is the capital ...' and answered "
                         "about a capital")
    args = ap.parse_args()
    os.chdir(ROOT)
    if not args.no_build:
        sh(["cargo", "build", "--release", "-p", "weir"])
        sh(["bash", "tools/bench-python-setup.sh"])
    weir_bin = os.path.join(ROOT, "target/release/weir")
    for path in (weir_bin, os.path.join(ROOT, VENV_PY)):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run without --no-build")
    wav, speech_end, seconds = prepare_input(os.path.join(ROOT, args.input), args.tail_s)

    cache = (os.path.join(ROOT, "target/bench-model-cache") if args.model_cache == "warm"
             else "off")
    env = dict(os.environ, NO_COLOR="1", WEIR_OUT=os.path.join(ROOT, WORK, "out"),
               RUST_LOG="warn,weir_engine::clock=info,weir_ml=debug", WEIR_MODEL_CACHE=cache)
    weir_cmd = [weir_bin, "run", GRAPH, "--set", f"mic.path={wav}", "--set", "mic.realtime=true",
                "--set", "heard.format=json", "--set", "answer.format=json"]
    for extra in args.weir_set:
        weir_cmd += ["--set", extra]
    py_cmd = [os.path.join(ROOT, VENV_PY), "bench/python/assistant.py", "--input", wav]
    if args.python_arena:
        py_cmd.append("--arena")
    sides = {"Weir": (weir_cmd, parse_weir), "Python": (py_cmd, parse_python)}

    load_before = load_average()
    print(f"{args.input} ({seconds:.2f} s) + {args.tail_s:.1f} s of silence, end of speech at "
          f"{speech_end:.3f} s; {args.rounds} rounds, alternating; load average {load_before}",
          flush=True)
    if args.model_cache == "warm":
        _, _, code, _ = run(weir_cmd, env)
        print(f"model cache {cache} filled by one untimed Weir run (exit {code})", flush=True)
    results = {"Weir": [], "Python": []}
    failed = []
    for rnd in range(args.rounds):
        order = ["Weir", "Python"] if rnd % 2 == 0 else ["Python", "Weir"]
        for side in order:
            cmd, parse = sides[side]
            spawned, lines, code, rss = run(cmd, env)
            f = figures(spawned, parse(lines), speech_end, rss)
            results[side].append(f)
            # Sensible, not identical: Whisper on onnxruntime hears "capital and friends"
            # where tract hears "capital of/on France" (see BENCHMARKS.md).
            ok = (code == 0 and "what is the capital" in (f.get("text") or "").lower()
                  and "capital" in f["answer"].lower())
            if not ok:
                failed.append((side, rnd + 1, code, f.get("text"), f["answer"]))
                if code != 0:
                    sys.stderr.write("\n".join(l for _, l in lines["err"][-20:]) + "\n")
            print(f"round {rnd + 1} {side:6}: load {fmt(f.get('load_s'), 's')}, "
                  f"transcript {fmt(f.get('transcript_ms'), 'ms')}, "
                  f"first token {fmt(f.get('first_token_ms'), 'ms')}, "
                  f"first audio {fmt(f.get('first_audio_ms'), 'ms')}, "
                  f"decode {fmt(f.get('decode_ms'), 'ms')}/token, RSS {fmt(rss, 'MiB')}; "
                  f"heard {f.get('text')!r}, answered {f['answer']!r}", flush=True)
    load_after = load_average()
    weir, py = results["Weir"], results["Python"]
    with open(os.path.join(ROOT, WORK, "results.json"), "w") as f:
        json.dump({"command": sys.argv, "load_average": [load_before, load_after],
                   "runs": results}, f, indent=1)

    print()
    print("Command: python3 bench/assistant_vs_python.py " + " ".join(sys.argv[1:]))
    print(f"Medians of {args.rounds} runs each, alternating, one process per run; "
          f"load average {load_before} before, {load_after} after.")
    print(f"`uptime`: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print()
    print(table(ROWS, weir, py))
    print()
    print("Breakdown (medians):")
    print()
    print(table(BREAKDOWN, weir, py))
    print()
    for side, runs in results.items():
        texts = sorted({(r.get("text"), r["answer"]) for r in runs}, key=str)
        for text, answer in texts:
            print(f"{side}: heard {text!r}, answered {answer!r}")
    print()
    for side, runs in results.items():
        names = sorted({k for r in runs for k in r.get("models_ms", {})})
        parts = [f"{n} {statistics.median(r['models_ms'][n] for r in runs if n in r.get('models_ms', {})):.0f} ms"
                 for n in names]
        print(f"{side} model loads (internal, medians, in parallel threads): {', '.join(parts)}")
    if failed:
        print(f"\n{len(failed)} run(s) did not hear the question or answer it as expected:")
        for side, rnd, code, text, answer in failed:
            print(f"  {side} round {rnd}: exit {code}, heard {text!r}, answered {answer!r}")
        if args.check:
            sys.exit(1)


if __name__ == "__main__":
    main()
