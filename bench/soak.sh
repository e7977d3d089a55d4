#!/usr/bin/env bash
# Soak: replays HOURS of conversation audio (real recordings and synthetic questions, each
# followed by a few seconds of room noise) through the voice assistant on the virtual clock,
# and samples the process's resident memory and open file descriptors once a second.
#
#   bash bench/soak.sh [HOURS]        # default 1; needs tools/setup.sh to have run
#
# Writes target/soak/samples.csv (wall s, transcripts and answers logged so far, RSS KiB, fds) and prints the curve
# (one row per tenth of the run) and the slope of RSS and fds per hour of audio after the
# first answer (warm-up: models loaded, caches sized).
set -euo pipefail
cd "$(dirname "$0")/.."
hours="${1:-1}"
out=target/soak
mkdir -p "$out"
command -v sox >/dev/null || { echo "soak: needs sox (apt install sox)" >&2; exit 2; }
cargo build --release --quiet --bin weir

# One round: every recording at 16 kHz mono, each followed by 6 s of quiet noise.
round="$out/round.wav"
if [ ! -f "$round" ]; then
  parts=()
  i=0
  for f in data/pocketsphinx/cards/*.wav data/pocketsphinx/librivox/*.wav \
           data/synth/question_16k.wav data/synth/command_48k.wav; do
    sox "$f" -r 16000 -c 1 -b 16 "$out/part$i.wav"
    sox -n -r 16000 -c 1 -b 16 "$out/gap$i.wav" synth 6 whitenoise vol 0.002
    parts+=("$out/part$i.wav" "$out/gap$i.wav")
    i=$((i + 1))
  done
  sox "${parts[@]}" "$round"
  rm -f "$out"/part*.wav "$out"/gap*.wav
fi
round_s=$(soxi -D "$round")
rounds=$(python3 -c "import math; print(math.ceil($hours * 3600 / $round_s))")
long="$out/conversation_${hours}h.wav"
[ -f "$long" ] || sox $(for _ in $(seq "$rounds"); do echo "$round"; done) "$long"
audio_s=$(soxi -D "$long")
echo "soak: $(printf %.0f "$audio_s") s of audio ($rounds rounds of $(printf %.1f "$round_s") s)"

log="$out/session.jsonl"
rm -f "$log"
WEIR_OUT="$out" ./target/release/weir run graphs/voice_assistant.yaml --clock virtual \
  --set mic.path="$long" --set mic.realtime=true --set slm.max_tokens=24 \
  --stats >"$out/stdout.txt" 2>"$out/stderr.txt" &
pid=$!
start=$(date +%s.%N)
echo "wall_s,answers,rss_kib,fds" >"$out/samples.csv"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
  answers=$(grep -c '"type":"text"' "$log" 2>/dev/null || true)
  now=$(date +%s.%N)
  [ -n "$rss" ] && echo "$(awk "BEGIN { printf \"%.1f\", $now - $start }"),${answers:-0},$rss,$fds" >>"$out/samples.csv"
  sleep 1
done
wait "$pid"
echo "soak: load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/samples.csv" "$audio_s" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
audio_h = float(sys.argv[2]) / 3600
wall = float(rows[-1]["wall_s"])
warm = [r for r in rows if int(r["answers"]) > 0]
print(f"soak: {len(rows)} samples over {wall:.0f} s wall for {audio_h:.2f} h of audio")
print(f"{'audio h':>8} {'texts':>8} {'RSS MiB':>8} {'fds':>5}")
for k in range(11):
    r = rows[min(len(rows) - 1, k * (len(rows) - 1) // 10)]
    print(f"{audio_h * float(r['wall_s']) / wall:8.2f} {r['answers']:>8} {int(r['rss_kib']) / 1024:8.1f} {r['fds']:>5}")
def slope(key):
    xs = [audio_h * float(r["wall_s"]) / wall for r in warm]
    ys = [float(r[key]) for r in warm]
    n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
if len(warm) > 2:
    print(f"soak: after the first answer RSS {int(warm[0]['rss_kib']) / 1024:.1f} -> "
          f"{int(warm[-1]['rss_kib']) / 1024:.1f} MiB, slope {slope('rss_kib') / 1024:+.2f} MiB per "
          f"hour of audio; fds {min(int(r['fds']) for r in warm)}..{max(int(r['fds']) for r in warm)}, "
          f"slope {slope('fds'):+.2f} per hour")
PY
