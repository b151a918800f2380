#!/bin/bash
# `alprd run` on an NVIDIA host: the torch backend (two lanes: engines.lanes "auto"),
# $CAMERAS file cameras (default 8) replaying $VIDEOS (default $ALPRD_TEST_DATA/videos)
# at 25 fps, decoded by $DECODER (cameras[].decoder: auto, the default, is NVDEC
# where PyNvVideoCodec loads; cpu; nvdec), for $1 seconds (default 50), then
# SIGTERM; prints the events, engines, the decoders the cameras got, the stop, and
# the GPU memory in use (nvidia-smi, every 10 s). The log goes to $OUT/daemon.log
# (default /tmp/alprd-daemon-gpu). $BATCH_WINDOW_MS: service.batch_window_ms (unset:
# the default).
set -u
OUT=${OUT:-/tmp/alprd-daemon-gpu}; export OUT; mkdir -p "$OUT"
REPO=$PWD
CAMERAS=${CAMERAS:-8}
DECODER=${DECODER:-auto}
ALPRD_TEST_DATA=${ALPRD_TEST_DATA:-$REPO/../shared/data}
VIDEOS=$(realpath "${VIDEOS:-$ALPRD_TEST_DATA/videos}")
mkdir -p /tmp/run/state
batch=$(( CAMERAS < 8 ? 8 : (CAMERAS > 32 ? 32 : CAMERAS) ))
{
  printf '[paths]\nroot = "%s"\nstate_dir = "/tmp/run/state"\n' "$REPO"
  printf '[engines]\nbackend = "torch"\nprecision = "fp16"\nbatch_size = %d\n' $batch
  printf '[models.vehicle]\ninput_size = [384, 640]\n[models.plate]\nbatch_size = 32\n[models.ocr]\nbatch_size = 32\n'
  printf '[service]\nhealth_interval_s = 10\n'
  [ -n "${BATCH_WINDOW_MS:-}" ] && printf 'batch_window_ms = %s\n' "$BATCH_WINDOW_MS"
  printf '[outputs.jsonl]\nenabled = true\n[metrics]\nenabled = false\n'
  videos=(rear-nl-L417VS dashcam-in-KA22P3368 parking-lot-topdown rear-nl-L417VS dashcam-in-KA22P3368 rear-nl-L417VS dashcam-in-KA22P3368 parking-lot-topdown)
  for i in $(seq 1 $CAMERAS); do
    v=${videos[$(( (i - 1) % 8 ))]}
    printf '[[cameras]]\nname = "cam%d"\nurl = "%s/%s.mp4"\nfps = 25\nloop = true\ndecoder = "%s"\n' $i "$VIDEOS" $v "$DECODER"
  done
} > /tmp/run/alprd.toml
python3 -m alprd run --config /tmp/run/alprd.toml --log-format json 2> $OUT/daemon.log &
pid=$!
: > $OUT/gpu-memory.txt
( while kill -0 $pid 2>/dev/null; do
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> $OUT/gpu-memory.txt 2>/dev/null
    sleep 10
  done ) &
sleep ${DURATION:-${1:-50}}
kill -TERM $pid; wait $pid; echo "exit code $?"
python3 - <<'PY'
import json, os, collections
ev = [json.loads(l) for l in open(os.environ["OUT"] + "/daemon.log") if l.startswith("{")]
c = collections.Counter(e["event"] for e in ev)
print(dict(c))
for e in ev:
    if e["event"] in ("alprd_ready", "alprd_stopped", "engine_built", "alprd_crashed", "nvdec_unavailable", "camera_decoder_fallback") or e.get("level") in ("error", "critical"):
        print({k: v for k, v in e.items() if k not in ("timestamp",)})
print("decoders:", collections.Counter(e.get("decoder") for e in ev if e["event"] == "camera_opened"))
print("plates:", sorted(collections.Counter((e["camera"], e["plate"]) for e in ev if e["event"] == "plate_event").items()))
print("plates by text:", collections.Counter(e["plate"] for e in ev if e["event"] == "plate_event"))
print([{k: e[k] for k in e if k not in ("timestamp", "logger")} for e in ev if e["event"] == "health"][-2:])
mem = [int(x) for x in open(os.environ["OUT"] + "/gpu-memory.txt").read().split() if x.strip().isdigit()]
if mem:
    print(f"GPU memory used, MiB, every 10 s: {mem}")
    half = mem[len(mem) // 2:]
    print(f"GPU memory: after the first sample {mem[1] if len(mem) > 1 else mem[0]}, max {max(mem)}, end {mem[-1]}, second half {min(half)}-{max(half)}")
PY
