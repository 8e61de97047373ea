#!/usr/bin/env bash
# Plans in S3 against plans on disk: `run --all` over the same users through
# create_second_key, once with --plans-dir on disk and once with
# --plans-dir s3://…, both against one moto on loopback; and the S3
# requests per user the S3 store adds, counted from `-v` request logs.
# Figures, not a test. See BENCHMARKS.md ("Plans in S3").
#
#   bench/s3.sh                        1,000 users, concurrency 8, 3 repeats
#   USERS=200 REPEAT=1 bench/s3.sh     a quick look
#   PROFILE=debug bench/s3.sh          without a release build
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-1000}
CONCURRENCY=${CONCURRENCY:-8}
REPEAT=${REPEAT:-3}
PROFILE=${PROFILE:-release}
VENV=${VENV:-.venv}

for tool in curl "$VENV/bin/moto_server"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done

echo "==> building ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then
  cargo build --quiet --release --bin iam-rotate --example fleet_floor
else
  cargo build --quiet --bin iam-rotate --example fleet_floor
fi
BIN=$PWD/target/$PROFILE/iam-rotate
FLOOR=$PWD/target/$PROFILE/examples/fleet_floor

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iam-rotate-s3-bench.XXXXXX")
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=AKIABENCHOPERATOR000 AWS_SECRET_ACCESS_KEY=bench-operator-not-a-secret-000000000000
export AWS_REGION=us-east-1 AWS_ENDPOINT_URL=$ENDPOINT AWS_EC2_METADATA_DISABLED=true
export HOME=$WORK/home NO_COLOR=1
unset AWS_PROFILE IAM_ROTATE_NOW IAM_ROTATE_ROLE_ARN IAM_ROTATE_PLANS_DIR

"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$ENDPOINT/moto-api/" >/dev/null && break; sleep 0.1; done

secs() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# fresh PLANS_DIR: an empty moto with $USERS users (one key each), planned.
fresh() {
  curl -sf -X POST "$ENDPOINT/moto-api/reset" >/dev/null
  rm -rf "$WORK/plans" "$HOME"; mkdir -p "$HOME"
  curl -sf -X PUT "$ENDPOINT/bench-plans" >/dev/null
  "$FLOOR" setup bench "$USERS" 1 2>/dev/null
  "$BIN" -q --plans-dir "$1" plan --all >/dev/null
}

local_times=() s3_times=()
for r in $(seq "$REPEAT"); do
  for where in local s3; do
    echo "==> repeat $r/$REPEAT: $USERS users, plans $where" >&2
    if [ $where = local ]; then dir=$WORK/plans; else dir=s3://bench-plans/team; fi
    fresh "$dir"
    start=$(secs)
    "$BIN" -v --plans-dir "$dir" run --all --concurrency "$CONCURRENCY" >"$WORK/run.out" 2>"$WORK/run-$where.log"
    took=$(awk -v a="$start" -v b="$(secs)" 'BEGIN {printf "%.3f", b-a}')
    grep -q "^$USERS plans: $USERS advanced" "$WORK/run.out" || { echo "bench: not every plan advanced" >&2; tail -3 "$WORK/run.out" >&2; exit 1; }
    if [ $where = local ]; then local_times+=("$took"); else s3_times+=("$took"); fi
  done
done
local_t=$(printf '%s\n' "${local_times[@]}" | median)
s3_t=$(printf '%s\n' "${s3_times[@]}" | median)

# S3 requests of the last S3 run, by operation: per process and per user.
per_op=$(grep -o ' s3 [A-Za-z0-9]* ok' "$WORK/run-s3.log" | awk '{print $2}' | sort | uniq -c |
  awk -v n="$USERS" '{printf "%s %s (%.2f per user); ", $2, $1, $1/n}')
total=$(grep -c ' s3 [A-Za-z0-9]* ' "$WORK/run-s3.log" || true)
once=$(grep -cE ' s3 (HeadBucket|ListObjectsV2) ' "$WORK/run-s3.log" || true)

echo
echo "moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)'), $(nproc) CPUs, $PROFILE build, $USERS users, concurrency $CONCURRENCY, median of $REPEAT"
echo
echo "| measure | plans on disk | plans in S3 | ratio |"
echo "|---|---|---|---|"
echo "| \`run --all\` through create_second_key | ${local_t} s | ${s3_t} s | **$(awk -v a="$s3_t" -v b="$local_t" 'BEGIN {printf "%.2f", a/b}')×** |"
echo "| S3 requests per user | 0 | **$(awk -v t="$total" -v o="$once" -v n="$USERS" 'BEGIN {printf "%.2f", (t-o)/n}')** (+ $once per process) | |"
echo
echo "S3 operations: $per_op"
