#!/usr/bin/env bash
# Runs the demo job on a real Apache DataFusion Ballista cluster: one scheduler and two
# executors, each its own process on loopback, installed with cargo at the version that
# matches the engine (ballista 55.0.0 for DataFusion 55). Compares the published segment files
# with a local run of the same job, then stops everything it started.
#
#   bash tests/ballista_cluster.sh            # 20,000 demo users
#   USERS=1000000 bash tests/ballista_cluster.sh
#
# The first run installs the two Ballista binaries into target/ballista-55.0.0 (a release
# build from crates.io: 20-40 minutes on 2 cores); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BALLISTA_VERSION=55.0.0
USERS=${USERS:-20000}
TOOLS=${BALLISTA_TOOLS:-$ROOT/target/ballista-$BALLISTA_VERSION}
WORK=${WORK:-$(mktemp -d)}
SCHED_PORT=${SCHED_PORT:-50050}
DATE=2026-11-24

if [ ! -x "$TOOLS/bin/ballista-scheduler" ] || [ ! -x "$TOOLS/bin/ballista-executor" ]; then
  echo "installing ballista-scheduler and ballista-executor $BALLISTA_VERSION into $TOOLS"
  # One target folder, so the executor reuses what the scheduler build compiled.
  export CARGO_TARGET_DIR="$TOOLS/build"
  # No link-time optimisation: a test cluster does not need it, and the build is much shorter.
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
  cargo install --locked --root "$TOOLS" "ballista-scheduler@$BALLISTA_VERSION"
  cargo install --locked --root "$TOOLS" "ballista-executor@$BALLISTA_VERSION"
  unset CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO CARGO_PROFILE_RELEASE_CODEGEN_UNITS
fi
# AUDIENCES_BIN names an already built binary; otherwise the release build is made here.
if [ -n "${AUDIENCES_BIN:-}" ]; then
  AUDIENCES="$AUDIENCES_BIN"
else
  cargo build --release --locked
  AUDIENCES="$ROOT/target/release/audiences"
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1; see the logs in $WORK" >&2
  return 1
}

echo "work folder: $WORK"
"$TOOLS/bin/ballista-scheduler" --bind-host 127.0.0.1 --bind-port "$SCHED_PORT" \
  --external-host 127.0.0.1 >"$WORK/scheduler.log" 2>&1 &
PIDS+=($!)
wait_port "$SCHED_PORT"
for i in 1 2; do
  base=$((SCHED_PORT + 10 * i))
  mkdir -p "$WORK/executor$i"
  "$TOOLS/bin/ballista-executor" --scheduler-host 127.0.0.1 --scheduler-port "$SCHED_PORT" \
    --bind-host 127.0.0.1 --external-host 127.0.0.1 \
    --bind-port "$((base + 1))" --bind-grpc-port "$((base + 2))" --bind-health-port "$((base + 3))" \
    --work-dir "$WORK/executor$i" --vcores 1 --memory-pool-size 4GB \
    --scheduler-connect-timeout-seconds 30 >"$WORK/executor$i.log" 2>&1 &
  PIDS+=($!)
  wait_port "$((base + 1))"
done

"$AUDIENCES" demo --users "$USERS" --dir "$WORK/data" --no-run
# Local paths work because the executors share this machine's file system; on a real cluster
# the data and the output would be on shared storage (s3://, gs://, az://).
run() {
  /usr/bin/time -f "%e s, %M KiB peak (this process)" "$AUDIENCES" run jobs/demo.toml --date "$DATE" \
    --param "data=$WORK/data" --output "$WORK/$1" --engine "$2"
}
echo "== local engine"
run local local
echo "== Ballista cluster at 127.0.0.1:$SCHED_PORT (two executors)"
run cluster "ballista://127.0.0.1:$SCHED_PORT"

published() { echo "$1/$(sed -n 's/.*"run": *"\([^"]*\)".*/\1/p' "$1/$DATE/current.json")"; }
A=$(published "$WORK/local")
B=$(published "$WORK/cluster")
# The segment files of each export, and the membership table they were cut from.
for f in tencent_ads meta_custom_audience segments.parquet; do
  if ! diff -r "$A/$f" "$B/$f" >/dev/null; then
    echo "$f differs between $A and $B" >&2
    exit 1
  fi
done
echo "segment files are byte-identical: $(find "$A/tencent_ads" "$A/meta_custom_audience" -type f | wc -l) files"
echo "logs: $WORK/scheduler.log, $WORK/executor1.log, $WORK/executor2.log"
