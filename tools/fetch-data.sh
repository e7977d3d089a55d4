#!/usr/bin/env bash
# Fetches and prepares the recorded audio used by the default graph and the tests.
#   - Debian's pocketsphinx-testdata: real human recordings with transcripts (16 kHz mono).
#   - Synthetic speech from espeak-ng at other rates and channel counts (sox).
#   - pauses.wav: real speech clips separated by known pauses, with their positions.
# Idempotent: does nothing when data/ is complete. Needs apt-get (or the package already
# downloaded), dpkg-deb, espeak-ng and sox.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data
stamp=$out/.complete-v4
if [[ -f $stamp ]]; then
  echo "data: up to date ($out/)"
  exit 0
fi
need() { command -v "$1" >/dev/null || { echo "data: '$1' is missing; install it: apt-get install -y $2" >&2; exit 1; }; }
need sox sox
need espeak-ng espeak-ng
need dpkg-deb dpkg

mkdir -p "$out/.cache" "$out/pocketsphinx" "$out/synth"
if ! ls "$out"/.cache/pocketsphinx-testdata_*.deb >/dev/null 2>&1; then
  echo "data: downloading Debian package pocketsphinx-testdata"
  (cd "$out/.cache" && apt-get download pocketsphinx-testdata 2>/dev/null) || {
    echo "data: 'apt-get download pocketsphinx-testdata' failed; run 'apt-get update' first" >&2; exit 1; }
fi
rm -rf "$out/.cache/x"
dpkg-deb -x "$out"/.cache/pocketsphinx-testdata_*.deb "$out/.cache/x"
src=$out/.cache/x/usr/share/pocketsphinx/test/data
cp -r "$src/librivox" "$src/cards" "$out/pocketsphinx/"
echo "data: pocketsphinx recordings in $out/pocketsphinx (librivox: 5, cards: 5)"

# Synthetic speech at other rates: 22.05 kHz mono, 44.1 kHz stereo, 48 kHz mono.
say() { espeak-ng -v en-us -s 150 -w "$out/synth/$1.raw.wav" "$2"; }
say question "What is the capital of France?"
say command "Turn on the lights in the kitchen, please."
say tell "Tell me about Paris."
say ask "How many people live there?"
sox "$out/synth/question.raw.wav" -r 22050 -c 1 -b 16 "$out/synth/question_22k.wav"
sox "$out/synth/question.raw.wav" -r 44100 -c 2 -b 16 "$out/synth/question_44k_stereo.wav"
sox "$out/synth/command.raw.wav" -r 48000 -c 1 -b 16 "$out/synth/command_48k.wav"
sox "$out/synth/question.raw.wav" -r 16000 -c 1 -b 16 "$out/synth/question_16k.wav"
# Two turns of one conversation, 3 s apart: a question, then one that needs the first.
sox -n -r 22050 -c 1 -b 16 "$out/synth/gap.raw.wav" trim 0 3
sox "$out/synth/tell.raw.wav" "$out/synth/gap.raw.wav" "$out/synth/ask.raw.wav" \
  "$out/synth/gap.raw.wav" -r 16000 -c 1 -b 16 "$out/synth/two_turns_16k.wav"
rm -f "$out"/synth/*.raw.wav
echo "data: synthetic speech in $out/synth"

# pauses.wav: three real clips, trimmed of their own silence, separated by known pauses
# with a little noise, so speech positions are known by construction.
clips=("cards/001.wav" "cards/003.wav" "librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
gap=1.2
tmp=$out/.cache/pauses
rm -rf "$tmp" && mkdir -p "$tmp"
sox -n -r 16000 -c 1 -b 16 "$tmp/gap.wav" synth "$gap" whitenoise vol 0.002
parts=("$tmp/gap.wav")
json="["
pos=$gap
i=0
for c in "${clips[@]}"; do
  sox "$out/pocketsphinx/$c" "$tmp/clip$i.wav" silence 1 0.02 2% reverse silence 1 0.02 2% reverse
  len=$(soxi -D "$tmp/clip$i.wav")
  end=$(python3 -c "print(round($pos + $len, 4))")
  json+="{\"clip\": \"$c\", \"start\": $pos, \"end\": $end},"
  parts+=("$tmp/clip$i.wav" "$tmp/gap.wav")
  pos=$(python3 -c "print(round($end + $gap, 4))")
  i=$((i + 1))
done
sox "${parts[@]}" "$out/pauses.wav"
echo "${json%,}]" > "$out/pauses.json"
echo "data: $out/pauses.wav with speech at $(cat "$out/pauses.json")"
touch "$stamp"
