#!/usr/bin/env bash
# iam-rotate at IAM's rate limit: `run --all` over USERS users' create step
# through a token-bucket proxy (bench/throttle_proxy.py: RATE requests/s,
# burst RATE, IAM's `Throttling` beyond) in front of moto, default flags,
# against the physical floor (2N+1)/R; the same with the SDK's adaptive
# token bucket instead of iam-rotate's pacing (--retry-mode adaptive); and
# the unthrottled row (moto direct) against the bare-SDK floor. Prints a
# Markdown table (kept in $WORK/results.md). Figures, not a test.
#
#   bench/throttle.sh                         300 users at R = 20 and 50, 1,000 unthrottled
#   RATES="20" USERS=100 REPEAT=1 bench/throttle.sh   a quick look
#
# Needs: the repository's .venv with moto[server] (scripts/test.sh makes
# it; VENV=… for another), curl.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-300}                  # users through create_second_key, throttled
RATES=${RATES:-20 50}                # the proxy's rate limits, requests/s
MODES=${MODES:-pacing sdk-adaptive}  # iam-rotate's pacing (default flags), the SDK's adaptive mode
FREE_USERS=${FREE_USERS:-1000}       # users of the unthrottled row (0: skip it)
REPEAT=${REPEAT:-3}                  # timed runs of the unthrottled row; the median is reported
CONCURRENCY=8                        # run --all's default, and the floor's
VENV=${VENV:-.venv}

for tool in curl "$VENV/bin/moto_server" "$VENV/bin/python"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (see the header of $0)" >&2; exit 1; }
done

echo "==> building (release)" >&2
cargo build --quiet --release --bin iam-rotate --example fleet_floor
BIN=$PWD/target/release/iam-rotate
FLOOR=$PWD/target/release/examples/fleet_floor

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iam-rotate-throttle.XXXXXX")
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO=http://127.0.0.1:$(free_port)
PROXY_PORT=$(free_port)
PROXY=http://127.0.0.1:$PROXY_PORT
export AWS_ACCESS_KEY_ID=AKIABENCHOPERATOR000 AWS_SECRET_ACCESS_KEY=bench-operator-not-a-secret-000000000000
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$MOTO AWS_EC2_METADATA_DISABLED=true
export HOME=$WORK/home IAM_ROTATE_PLANS_DIR=$WORK/plans NO_COLOR=1
unset AWS_PROFILE AWS_MAX_ATTEMPTS AWS_RETRY_MODE IAM_ROTATE_NOW IAM_ROTATE_ROLE_ARN IAM_ROTATE_MAX_RPS

"$VENV/bin/moto_server" -H 127.0.0.1 -p "${MOTO##*:}" >"$WORK/moto.log" 2>&1 &
PIDS=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$MOTO/moto-api/" >/dev/null && break; sleep 0.1; done
echo "==> moto on $MOTO, scratch in $WORK" >&2

fresh() { curl -sf -X POST "$MOTO/moto-api/reset" >/dev/null; rm -rf "$WORK/plans" "$HOME"; mkdir -p "$HOME"; }
secs() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -g | awk 'NR == 1 {min = $1} {max = $1} END {printf "%s–%s", min, max}'; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }

# --- throttled: run --all through the token bucket -------------------------
: >"$WORK/throttled.md"
for rate in $RATES; do
  "$VENV/bin/python" bench/throttle_proxy.py "$PROXY_PORT" "$MOTO" "$rate" 2>"$WORK/proxy-$rate.log" &
  PROXY_PID=$!; PIDS+=("$PROXY_PID")
  for _ in $(seq 100); do curl -sf "$PROXY/__stats" >/dev/null && break; sleep 0.1; done
  for mode in $MODES; do
    echo "==> R = $rate/s, $USERS users, $mode" >&2
    fresh
    "$FLOOR" setup bench "$USERS" 1 2>/dev/null
    "$BIN" -q plan --all >/dev/null                       # moto direct: only run is measured
    flags=()
    [ "$mode" = sdk-adaptive ] && flags=(--retry-mode adaptive)
    curl -sf -X POST "$PROXY/__reset" >/dev/null
    start=$(secs)
    code=0
    AWS_ENDPOINT_URL=$PROXY "$BIN" "${flags[@]}" run --all >"$WORK/run-$rate-$mode.out" 2>"$WORK/run-$rate-$mode.err" || code=$?
    wall=$(calc "%.2f" "$(secs) - $start")
    read -r sent throttled < <(curl -sf "$PROXY/__stats")
    early=$(curl -sf "$PROXY/__timeline" | awk '$1 < 2' | wc -l)     # throttles in the run's first 2 s
    finished=$(grep -l "^phase: wait_for_adoption" "$WORK"/plans/*/*.yaml | wc -l)
    floor=$(calc "%.2f" "(2 * $USERS + 1) / $rate")
    echo "| $rate | $mode | $wall s | $floor s | **$(calc "%.2f" "$wall / $floor")×** | $throttled of $sent (**$(calc "%.1f" "100 * $throttled / $sent")%**; $early in the first 2 s) | **$finished** of $USERS | $code |" \
      | tee -a "$WORK/throttled.md" >&2
  done
  kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
done

# --- unthrottled: run --all vs the bare SDK loop, moto direct --------------
tool_times=() floor_times=()
if [ "$FREE_USERS" -gt 0 ]; then
  for r in $(seq "$REPEAT"); do
    echo "==> unthrottled, repeat $r/$REPEAT: $FREE_USERS users" >&2
    fresh
    "$FLOOR" setup bench "$FREE_USERS" 1 2>/dev/null
    "$BIN" -q plan --all >/dev/null
    start=$(secs)
    "$BIN" run --all >"$WORK/free.out" 2>"$WORK/free.err"
    tool_times+=("$(calc "%.3f" "$(secs) - $start")")
    grep -q "^$FREE_USERS plans: $FREE_USERS advanced" "$WORK/free.out" || { echo "bench: run --all did not advance every plan" >&2; exit 1; }
    fresh
    "$FLOOR" setup bench "$FREE_USERS" 1 2>/dev/null
    start=$(secs)
    "$FLOOR" create-keys bench "$FREE_USERS" "$CONCURRENCY" 2>/dev/null
    floor_times+=("$(calc "%.3f" "$(secs) - $start")")
  done
fi

{
  echo "moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)'), $(nproc) CPUs, concurrency $CONCURRENCY (default flags)"
  echo
  echo "| R (req/s) | pacing | wall time | floor (2N+1)/R | ratio | throttled (of requests sent) | users finished in one run | exit |"
  echo "|---|---|---|---|---|---|---|---|"
  cat "$WORK/throttled.md"
  if [ "$FREE_USERS" -gt 0 ]; then
    tool=$(printf '%s\n' "${tool_times[@]}" | median)
    floor=$(printf '%s\n' "${floor_times[@]}" | median)
    echo
    echo "| unthrottled, $FREE_USERS users | iam-rotate | bare SDK floor | ratio |"
    echo "|---|---|---|---|"
    echo "| median of $REPEAT (min–max) | $tool s ($(printf '%s\n' "${tool_times[@]}" | spread)) | $floor s ($(printf '%s\n' "${floor_times[@]}" | spread)) | **$(calc "%.2f" "$tool / $floor")×** |"
  fi
} | tee "$WORK/results.md"
if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK/home" "$WORK/plans"; fi
echo >&2
echo "==> results kept in $WORK/results.md" >&2
