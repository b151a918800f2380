#!/bin/bash
# `alprd run` on an NVIDIA host: the torch backend (two lanes: engines.lanes "auto"),
# 8 file cameras replaying $VIDEOS (default $ALPRD_TEST_DATA/videos), for
# $1 seconds (default 50), then SIGTERM; prints the events, engines and the stop.
# The log goes to $OUT/daemon.log (default /tmp/alprd-daemon-gpu).
set -u
OUT=${OUT:-/tmp/alprd-daemon-gpu}; export OUT; mkdir -p "$OUT"
REPO=$PWD
ALPRD_TEST_DATA=${ALPRD_TEST_DATA:-$REPO/../shared/data}
VIDEOS=$(realpath "${VIDEOS:-$ALPRD_TEST_DATA/videos}")
mkdir -p /tmp/run/state
{
  printf '[paths]\nroot = "%s"\nstate_dir = "/tmp/run/state"\n' "$REPO"
  printf '[engines]\nbackend = "torch"\nprecision = "fp16"\nbatch_size = 8\n'
  printf '[models.vehicle]\ninput_size = [384, 640]\n[models.plate]\nbatch_size = 32\n[models.ocr]\nbatch_size = 32\n'
  printf '[service]\nhealth_interval_s = 10\n[outputs.jsonl]\nenabled = true\n[metrics]\nenabled = false\n'
  i=0
  for v in rear-nl-L417VS dashcam-in-KA22P3368 parking-lot-topdown rear-nl-L417VS dashcam-in-KA22P3368 rear-nl-L417VS dashcam-in-KA22P3368 parking-lot-topdown; do
    i=$((i+1)); printf '[[cameras]]\nname = "cam%d"\nurl = "%s/%s.mp4"\nfps = 25\n' $i "$VIDEOS" $v
  done
} > /tmp/run/alprd.toml
python3 -m alprd run --config /tmp/run/alprd.toml --log-format json 2> $OUT/daemon.log &
pid=$!
sleep ${1:-50}
kill -TERM $pid; wait $pid; echo "exit code $?"
python3 - <<'PY'
import json, os, collections
ev = [json.loads(l) for l in open(os.environ["OUT"] + "/daemon.log") if l.startswith("{")]
c = collections.Counter(e["event"] for e in ev)
print(dict(c))
for e in ev:
    if e["event"] in ("alprd_ready", "alprd_stopped", "engine_built", "alprd_crashed") or e.get("level") in ("error", "critical"):
        print({k: v for k, v in e.items() if k not in ("timestamp",)})
print("plates:", collections.Counter((e["camera"], e["plate"]) for e in ev if e["event"] == "plate_event"))
print([{k: e[k] for k in e if k not in ("timestamp", "logger")} for e in ev if e["event"] == "health"][-2:])
PY
