#!/usr/bin/env bash
# Accelerator readiness check for zasjax, in one go and within a time budget (default 8 min).
#
#   benchmarks/gpu_check.sh [OUT_DIR] [--budget SECONDS]      (run from the repository root)
#
# For a machine with a CUDA build of jax, optax, equinox and diffrax but no network: installs
# zasjax with `pip install --no-deps -e .`, then runs, each step under its own timeout so one
# slow step cannot eat the budget:
#   1. env      the JAX backend and devices                          -> env.json
#   2. bench    `zasjax bench` (config-steps/s per case, fraction of the measured matmul peak)
#                                                                    -> bench.json, bench.log
#   3. fig2     Figure 2 at d = 100 with the full engine, tuned learning rate, float64, one
#               depth after another until the time runs out         -> fig2-L<depth>/, fig2.log
#   4. fig4     a few steps of Figure 4's ResNet at depth 10,000     -> fig4/, fig4.log
#   summary.json: every step's exit status and seconds, and the figures above.
# Without a GPU it runs the same steps at small sizes (a CPU smoke test of the script).
# OUT_DIR defaults to $OUT, else ./gpu_check_out. Exit status: 0 if every step that ran
# finished (a depth cut short by the budget is expected), 1 otherwise.
set -u

OUT_DIR="${OUT:-gpu_check_out}"
BUDGET=480
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) BUDGET="${2:?--budget needs seconds}"; shift 2 ;;
    --budget=*) BUDGET="${1#--budget=}"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
    *) OUT_DIR="$1"; shift ;;
  esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check.sh: --budget expects whole seconds" >&2; exit 2;; esac
if [ ! -f pyproject.toml ] || [ ! -d zasjax ]; then
  echo "gpu_check.sh: run it from the zasjax repository root" >&2; exit 2
fi
PY="${PYTHON:-python}"
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
START=$(date +%s)
STEPS="$OUT_DIR/steps.tsv"
: > "$STEPS"
export ZASJAX_CACHE_DIR="$OUT_DIR/jax-cache"   # a cold, private compilation cache
export PYTHONUNBUFFERED=1

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME LIMIT_S CMD...: run under `timeout`, log to NAME.log, record status and seconds.
step() {
  local name=$1 limit=$2; shift 2
  local rest; rest=$(left)
  [ "$limit" -gt $((rest - 5)) ] && limit=$((rest - 5))
  if [ "$limit" -lt 10 ]; then
    printf '%s\tskipped\t0\n' "$name" >> "$STEPS"; echo "[$name] skipped: budget spent"; return 124
  fi
  echo "[$name] up to ${limit}s: $*"
  local t0 rc; t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >> "$OUT_DIR/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$STEPS"
  echo "[$name] exit $rc after $(( $(date +%s) - t0 ))s"
  return $rc
}

step install 120 "$PY" -m pip install --no-deps --no-build-isolation -e . \
  || step install-retry 120 "$PY" -m pip install --no-deps -e .
step env 60 "$PY" -c "
import json, jax
d = jax.devices()
json.dump({'backend': jax.default_backend(), 'devices': [str(x) for x in d],
           'device_kind': d[0].device_kind, 'jax': jax.__version__}, open('$OUT_DIR/env.json', 'w'), indent=1)
print(jax.default_backend(), d)"
BACKEND=$("$PY" -c "import json; print(json.load(open('$OUT_DIR/env.json'))['backend'])" 2>/dev/null || echo cpu)
echo "backend: $BACKEND"

if [ "$BACKEND" = gpu ] || [ "$BACKEND" = cuda ]; then
  BENCH=(--json "$OUT_DIR/bench.json" --sweep-depth 128 --per-depth-samples 8); BENCH_S=180
  DIM=100; DEPTHS="10 30 100 300 1000 3000 10000"; ITERS=20000; FIG2_S=240
  FIG4=(--depths 10000 --init mzas --steps 5 --record-every 1); FIG4_S=150
else  # no GPU: the same steps, small, so the script itself is tested
  BENCH=(--quick --json "$OUT_DIR/bench.json" --sweep-depth 4); BENCH_S=$((BUDGET / 2))
  DIM=10; DEPTHS="2 4 8"; ITERS=2000; FIG2_S=$((BUDGET / 4))
  FIG4=(--depths 20 --init mzas --steps 3 --record-every 1 --train-size 100); FIG4_S=$((BUDGET / 5))
fi

step bench "$BENCH_S" "$PY" -m zasjax bench "${BENCH[@]}"

# Figure 2: one depth at a time, deepest last, while the fig2 share of the budget lasts.
FIG2_END=$(( $(date +%s) + FIG2_S ))
LARGEST=0
for L in $DEPTHS; do
  share=$(( FIG2_END - $(date +%s) ))
  [ "$share" -lt 10 ] && break
  rm -rf "$OUT_DIR/fig2-L$L"
  if step "fig2-L$L" "$share" "$PY" -m zasjax sweep --init zas --target gaussian --dim "$DIM" \
      --depths "$L" --tune-lr --x64 --max-iters "$ITERS" --engine full --no-progress \
      --out "$OUT_DIR/fig2-L$L"; then
    LARGEST=$L
  else
    break  # the next depth is slower still
  fi
done
echo "fig2: largest depth finished at d = $DIM: $LARGEST"

DATA="../shared/data/fashion-mnist"
if [ -d "$DATA" ]; then
  step fig4 "$FIG4_S" "$PY" -m zasjax reproduce fig4 "${FIG4[@]}" --data-dir "$DATA" \
    --out "$OUT_DIR/fig4"
else
  printf 'fig4\tno-data\t0\n' >> "$STEPS"; echo "[fig4] skipped: no $DATA"
fi

"$PY" - "$OUT_DIR" "$DIM" "$LARGEST" <<'EOF'
import csv, json, os, sys
out, dim, largest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps = [dict(zip(("step", "status", "seconds"), line.rstrip("\n").split("\t")))
         for line in open(os.path.join(out, "steps.tsv"))]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None
summary = {"env": load("env.json"), "steps": steps, "fig2": {"dim": dim, "largest_depth": largest}}
bench = load("bench.json")
if bench:
    summary["bench"] = {"matmul_peak_gflops": bench["matmul_peak_gflops"],
                        "cases": {k: {"cfg_steps_per_s": c["cfg_steps_per_s"],
                                      "fraction_of_matmul_peak": c["fraction_of_matmul_peak"]}
                                  for k, c in bench["cases"].items()},
                        "d100_devices": bench.get("d100_devices")}
if largest:
    folder = os.path.join(out, f"fig2-L{largest}")
    rows = list(csv.DictReader(open(os.path.join(folder, "results.csv"))))
    summary["fig2"].update(seconds=load(f"fig2-L{largest}/config.json")["seconds"],
                           best=[{k: r[k] for k in ("depth", "lr", "iterations", "status")}
                                 for r in rows])
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
EOF

echo "wrote $OUT_DIR/summary.json ($(( $(date +%s) - START ))s of ${BUDGET}s)"
# Failed: a step that ran and did not finish, other than a fig2 depth cut short by the budget.
awk -F'\t' '$2 != "0" && $2 != "skipped" && $2 != "no-data" && !($1 ~ /^fig2-L/ && $2 == "124") && $1 !~ /^install/ {bad=1} END {exit bad}' "$STEPS"
