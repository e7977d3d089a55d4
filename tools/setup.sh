#!/usr/bin/env bash
# One-time set-up: recorded audio for the graphs and tests, then the models.
# Needs: sox, espeak-ng, python3 with venv/pip (see README.md for the apt-get line).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/fetch-data.sh"
bash "$here/fetch-models.sh"
