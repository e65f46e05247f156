#!/usr/bin/env bash
# The scale figures of the README ("On 16 cores") in one go, each benchmark under its own time limit, its output
# kept in $OUTDIR as it goes (a benchmark stopped at its limit still leaves what it printed). See docs/scale-runs.md.
#
#   ROWS=100000000 PROFILES=10000000 CORES=16 OUTDIR=/tmp/scale WORK=/data/w benchmarks/scale_run.sh [steps...]
#
# Steps (default: all, in this order): ingest-duckdb ingest-lake ingest-spark segment-duckdb segment-lake-spark
set -uo pipefail
PY=${PY:-.venv/bin/python}
ROWS=${ROWS:-100000000}
PROFILES=${PROFILES:-10000000}
CORES=${CORES:-$(nproc)}
OUTDIR=${OUTDIR:-/tmp/scale}
WORK=${WORK:-/tmp/scale-work}
LIMIT=${LIMIT:-900}  # seconds per step
export PYTHONUNBUFFERED=1
export AUDIENCEHUB_ENGINE_MEMORY_LIMIT=${AUDIENCEHUB_ENGINE_MEMORY_LIMIT:-32GB}
export AUDIENCEHUB_PROFILE_MEMORY_LIMIT=${AUDIENCEHUB_PROFILE_MEMORY_LIMIT:-32GB}
export PYSPARK_SUBMIT_ARGS=${PYSPARK_SUBMIT_ARGS:---driver-memory 48g pyspark-shell}
mkdir -p "$OUTDIR" "$WORK"
CSV="$WORK/audience-$ROWS.csv"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(ingest-duckdb ingest-lake ingest-spark segment-duckdb segment-lake-spark)

run() {  # name, command...
  local name=$1; shift
  echo "== $name ($(date -u +%H:%M:%S), limit ${LIMIT}s)" | tee -a "$OUTDIR/summary.txt"
  timeout "$LIMIT" "$@" 2>&1 | tee "$OUTDIR/$name.txt"
  echo "   exit ${PIPESTATUS[0]} at $(date -u +%H:%M:%S)" | tee -a "$OUTDIR/summary.txt"
}

{ nproc; free -g | head -2; df -h "$WORK" | tail -1; "$PY" -c \
  "import sys, duckdb, pyarrow; print(sys.version.split()[0], 'duckdb', duckdb.__version__, 'pyarrow', pyarrow.__version__)"
  java -version 2>&1 | head -1; } > "$OUTDIR/machine.txt" 2>&1

for step in "${steps[@]}"; do
  case $step in
    ingest-duckdb) run "$step" "$PY" benchmarks/ingest.py --rows "$ROWS" --work "$WORK" --csv "$CSV" ;;
    ingest-lake) AUDIENCEHUB_PROFILE_STORE=lake run "$step" "$PY" benchmarks/ingest.py --rows "$ROWS" --work "$WORK" \
      --csv "$CSV" ;;
    ingest-spark) run "$step" "$PY" benchmarks/ingest.py --rows "$ROWS" --work "$WORK" --csv "$CSV" --engine spark \
      --spark-master "local[$CORES]" ;;
    segment-duckdb) run "$step" "$PY" benchmarks/segment.py --profiles "$PROFILES" --threads "$CORES" --work "$WORK" ;;
    segment-lake-spark) run "$step" "$PY" benchmarks/segment.py --profiles "$PROFILES" --store lake --engine spark \
      --spark-master "local[$CORES]" --spark-memory 48g --work "$WORK" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
