#!/usr/bin/env bash
# Makes the virtual environment of the Python + onnxruntime baseline
# (bench/python/assistant.py) from PyPI, with the versions pinned in
# bench/python/requirements.txt, under target/bench-venv (git-ignored).
#
#   bash tools/bench-python-setup.sh    # idempotent: "bench-python: up to date" when done
#
# The models are Weir's own (models/, from tools/fetch-models.sh); nothing else is fetched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQ="bench/python/requirements.txt"
VENV="${WEIR_BENCH_VENV:-target/bench-venv}"
STAMP="$VENV/.requirements"

say() { echo "bench-python: $*"; }
die() { echo "bench-python: FAILED: $*" >&2; exit 1; }

PY_SYS="$(command -v python3 || true)"
[ -n "$PY_SYS" ] || die "python3 not found"
"$PY_SYS" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
  || die "python3 >= 3.9 needed, found $("$PY_SYS" --version 2>&1)"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && cmp -s "$REQ" "$STAMP"; then
  say "up to date ($VENV)"
  exit 0
fi
rm -rf "$VENV"
say "creating $VENV"
"$PY_SYS" -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" \
  || die "pip install -r $REQ"
"$VENV/bin/python" - <<'PY' || die "the installed packages do not import"
import numpy, onnxruntime, soxr, tokenizers, yaml
print("bench-python: numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__,
      "soxr", soxr.__version__, "tokenizers", tokenizers.__version__)
PY
cp "$REQ" "$STAMP"
for m in models/silero_vad_16k.onnx models/whisper-tiny.en/decoder.onnx models/smollm2-135m/model.onnx; do
  [ -f "$m" ] || say "note: $m is missing: run bash tools/fetch-models.sh"
done
say "ready ($VENV)"
