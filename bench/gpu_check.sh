#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU: the GPU tests and the detector benchmark.
#
# Uses only this repository and the machine's own Python: `python3` from PATH with torch,
# torchvision, transformers, numpy and Pillow; no Ray, no network, no project venv. Everything
# lands in "$OUT/gpu_check.json" (figures, test outcome, environment) and "$OUT/gpu_check.log"
# (full output), within a 5-minute budget overall (each step runs under `timeout`).
#
#   OUT=/tmp/gpu-check bench/gpu_check.sh          # on the GPU box
#   DEVICE=cpu OUT=/tmp/gpu-check bench/gpu_check.sh   # the same script end to end on a CPU
#
# Settings: DEVICE (cuda), DTYPE (bf16), BUDGET_S (290), BENCH_FULL (0), BENCH_ARGS (extra
# bench/detect.py args), PYTHON (python3).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/var/gpu_check}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
BUDGET_S=${BUDGET_S:-290}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
START=$(date +%s)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONDONTWRITEBYTECODE=1
cd "$ROOT"

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
log() { echo "== $*" | tee -a "$LOG"; }

log "gpu_check on $(hostname) at $(date -u +%FT%TZ), device=$DEVICE dtype=$DTYPE budget=${BUDGET_S}s"
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv) >>"$LOG" 2>&1
timeout 60 "$PY" - >"$OUT/env.json" 2>>"$LOG" <<'EOF'
import json, platform
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
try:
    import torchvision
    info["torchvision"] = torchvision.__version__
except Exception as exc:
    info["torchvision"] = f"unavailable: {exc}"
import transformers
info["transformers"] = transformers.__version__
for name in ("ray", "pytest"):
    try:
        __import__(name)
        info[name] = True
    except ImportError:
        info[name] = False
print(json.dumps(info))
EOF
cat "$OUT/env.json" >>"$LOG"

# 1. The GPU-relevant tests that need no Ray or database (they skip what needs those).
TESTS_RC=skipped
if "$PY" -c "import pytest" 2>/dev/null; then
  log "pytest tests/test_decode.py tests/test_detect_pool.py"
  timeout $(( $(left) < 120 ? $(left) : 120 )) "$PY" -m pytest -q -p no:cacheprovider -o addopts="" \
    --junitxml="$OUT/pytest.xml" tests/test_decode.py tests/test_detect_pool.py -m "not slow" >>"$LOG" 2>&1
  TESTS_RC=$?
else
  log "pytest is not installed: tests skipped"
fi

# 2. The benchmark, with whatever time is left (its quick size when little is).
BENCH_RC=skipped
REMAINING=$(left)
if [ "$REMAINING" -gt 30 ]; then
  # --quick (1024 images, 256 through the slow pipeline arms) fits the budget with room to
  # spare; BENCH_FULL=1 runs the full sizes (4096 / 1024) when more time is allowed.
  SIZE="--quick"
  [ "${BENCH_FULL:-0}" = 1 ] && SIZE=""
  log "bench/detect.py --device $DEVICE --dtype $DTYPE $SIZE ${BENCH_ARGS:-} (${REMAINING}s left)"
  timeout $((REMAINING - 5)) "$PY" bench/detect.py --device "$DEVICE" --dtype "$DTYPE" $SIZE ${BENCH_ARGS:-} \
    >"$OUT/bench.out" 2>>"$LOG"
  BENCH_RC=$?
  cat "$OUT/bench.out" >>"$LOG"
else
  log "no time left for the benchmark"
fi

# 3. One file with everything.
TESTS_RC=$TESTS_RC BENCH_RC=$BENCH_RC ELAPSED=$(( $(date +%s) - START )) OUT="$OUT" "$PY" - <<'EOF' | tee -a "$LOG"
import json, os, xml.etree.ElementTree as ET
out = os.environ["OUT"]
result = {"elapsed_s": int(os.environ["ELAPSED"]), "tests_rc": os.environ["TESTS_RC"], "bench_rc": os.environ["BENCH_RC"]}
try:
    result["env"] = json.load(open(os.path.join(out, "env.json")))
except Exception as exc:
    result["env"] = f"unreadable: {exc}"
try:
    suite = ET.parse(os.path.join(out, "pytest.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    result["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    result["tests"]["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                                 if c.find("failure") is not None or c.find("error") is not None]
except Exception as exc:
    result["tests"] = f"no results: {exc}"
try:
    lines = [l for l in open(os.path.join(out, "bench.out")).read().splitlines() if l.strip()]
    result["bench"] = json.loads(lines[-1])
except Exception as exc:
    result["bench"] = f"no figures: {exc}"
json.dump(result, open(os.path.join(out, "gpu_check.json"), "w"), indent=2)
print(json.dumps({k: result[k] for k in ("elapsed_s", "tests_rc", "bench_rc")}))
EOF
log "wrote $OUT/gpu_check.json"
