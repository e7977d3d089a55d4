#!/usr/bin/env python3
"""End of speech -> first answer token: the voice assistant in one process
(graphs/voice_assistant.yaml) against the split assistant (graphs/split/brain.yaml and
device.yaml as two processes on loopback), rounds alternating, the recording replayed at
real-time pace (`mic.realtime=true`).

Both are read from the Chrome trace (`--trace`) of the process that holds the microphone:
the end of speech is the first `produce` of `mic` plus the time of the recording's last
loud sample (the source is paced from its first frame); the first token is the start of the
first `process` call of `answer` (the printer of the confirmed tokens).

    python3 bench/split_first_token.py --weir target/release/weir --rounds 5
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import wave
import struct

RECORDING = "data/synth/question_44k_stereo.wav"


def last_loud_s(path):
    with wave.open(path) as w:
        ch, rate, n = w.getnchannels(), w.getframerate(), w.getnframes()
        data = w.readframes(n)
    samples = struct.unpack(f"<{n * ch}h", data)
    last = max(i for i, s in enumerate(samples) if abs(s) > 0.01 * 32768)
    return (last // ch) / rate


def first_token_ms(trace_path, speech_end_s):
    events = json.load(open(trace_path))
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M"}
    by = lambda node, name: sorted(
        e["ts"] for e in events
        if e.get("ph") == "B" and e.get("name") == name and names.get(e["tid"]) == f"weir:{node}"
    )
    start = by("mic", "produce")[0]
    token = by("answer", "process")[0]
    return (token - start) / 1000.0 - speech_end_s * 1000.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def single(weir, out):
    trace = os.path.join(out, "single.json")
    subprocess.run(
        [weir, "run", "graphs/voice_assistant.yaml", "--set", "mic.realtime=true", "--trace", trace],
        env={**os.environ, "WEIR_OUT": out}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )
    return trace


def split(weir, out, settle):
    trace = os.path.join(out, "device.json")
    addr = f"127.0.0.1:{free_port()}"
    brain = subprocess.Popen(
        [weir, "run", "graphs/split/brain.yaml"], env={**os.environ, "WEIR_LISTEN": addr},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle)  # the brain's models load before the device speaks
        subprocess.run(
            [weir, "run", "graphs/split/device.yaml", "--set", "mic.realtime=true", "--trace", trace],
            env={**os.environ, "WEIR_OUT": out, "WEIR_BRAIN": addr},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300,
        )
        brain.wait(timeout=60)
    finally:
        if brain.poll() is None:
            brain.kill()
    return trace


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weir", default="target/release/weir")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--settle", type=float, default=10.0, help="seconds for the brain to load its models")
    a = p.parse_args()
    end = last_loud_s(RECORDING)
    print(f"{RECORDING}: speech ends at {end:.3f} s; load average {open('/proc/loadavg').read().split()[:3]}")
    one, two = [], []
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory() as out:
            one.append(first_token_ms(single(a.weir, out), end))
        with tempfile.TemporaryDirectory() as out:
            two.append(first_token_ms(split(a.weir, out, a.settle), end))
        print(f"round {r}: one process {one[-1]:.0f} ms, two processes {two[-1]:.0f} ms", flush=True)
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"\n| end of speech -> first answer token | one process | two processes | ratio |")
    print(f"|---|---|---|---|")
    print(f"| median of {a.rounds} | {m1:.0f} ms | {m2:.0f} ms | {m2 / m1:.2f}x |")
    print(f"load average at the end {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
