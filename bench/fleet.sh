#!/usr/bin/env bash
# Fleet-scale benchmark of iam-rotate against moto on loopback. Prints a
# Markdown table (and keeps it in $WORK/results.md). Figures, not a test:
# nothing here asserts a time. See BENCHMARKS.md for what each row means.
#
#   bench/fleet.sh                      1,000 users, concurrency 8, 3 repeats
#   USERS=200 REPEAT=1 bench/fleet.sh   a quick look
#   KEEP=1 bench/fleet.sh               keep the scratch folder (plans, moto log)
#
# Needs: the repository's .venv with moto[server] (scripts/test.sh makes it),
# curl, /usr/bin/time (Debian package `time`). The AWS CLI for row 2 is
# installed on first use into target/bench-awscli (PyPI), never into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-1000}            # users taken through create_second_key
CONCURRENCY=${CONCURRENCY:-8}   # run --all --concurrency, and the floor's
REPEAT=${REPEAT:-3}             # timed runs of each; the median is reported
CLI_SAMPLE=${CLI_SAMPLE:-20}    # users done by the AWS CLI loop, extrapolated
COUNT_USERS=${COUNT_USERS:-20}  # users whose requests are counted per phase
PLANS=${PLANS:-10000}           # plan files read by `status`
VENV=${VENV:-.venv}
ACCOUNT=123456789012            # moto's default account

for tool in curl /usr/bin/time "$VENV/bin/moto_server"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (see the header of $0)" >&2; exit 1; }
done

echo "==> building (release)" >&2
cargo build --quiet --release --bin iam-rotate --example fleet_floor
BIN=$PWD/target/release/iam-rotate
FLOOR=$PWD/target/release/examples/fleet_floor

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iam-rotate-bench.XXXXXX")
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=AKIABENCHOPERATOR000 AWS_SECRET_ACCESS_KEY=bench-operator-not-a-secret-000000000000
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$ENDPOINT AWS_EC2_METADATA_DISABLED=true
export HOME=$WORK/home IAM_ROTATE_PLANS_DIR=$WORK/plans NO_COLOR=1
unset AWS_PROFILE AWS_MAX_ATTEMPTS AWS_RETRY_MODE IAM_ROTATE_NOW IAM_ROTATE_ROLE_ARN

# The recorder stays off (one flag test per request) until row 3 turns it on.
MOTO_RECORDER_FILEPATH=$WORK/recording.jsonl "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" \
  >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$ENDPOINT/moto-api/" >/dev/null && break; sleep 0.1; done
echo "==> moto on $ENDPOINT, scratch in $WORK" >&2

moto() { curl -sf -X POST "$ENDPOINT/moto-api/$1" >/dev/null; }
fresh() { moto reset; rm -rf "$WORK/plans" "$HOME"; mkdir -p "$HOME"; }
secs() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -g | awk 'NR == 1 {min = $1} {max = $1} END {printf "%s–%s", min, max}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
at() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# Runs a command under /usr/bin/time: wall seconds to $WALL, peak RSS (kB) to $RSS.
measure() {
  local start end
  start=$(secs)
  /usr/bin/time -v -o "$WORK/time.txt" "$@"
  end=$(secs)
  WALL=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b-a}')
  RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
}

# --- 1. run --all through create_second_key vs the bare SDK loop ----------
tool_times=() floor_times=() run_rss=0 plan_times=()
for r in $(seq "$REPEAT"); do
  echo "==> [1] repeat $r/$REPEAT: $USERS users" >&2
  fresh
  "$FLOOR" setup bench "$USERS" 1 2>/dev/null
  start=$(secs); "$BIN" -q plan --all >/dev/null
  plan_times+=("$(awk -v a="$start" -v b="$(secs)" 'BEGIN {printf "%.3f", b-a}')")
  measure "$BIN" run --all --concurrency "$CONCURRENCY" >"$WORK/run.out" 2>"$WORK/run.err"
  grep -q "^$USERS plans: $USERS advanced" "$WORK/run.out" || { echo "bench: run --all did not advance every plan:" >&2; tail -5 "$WORK/run.out" >&2; exit 1; }
  tool_times+=("$WALL"); (( RSS > run_rss )) && run_rss=$RSS

  fresh
  "$FLOOR" setup bench "$USERS" 1 2>/dev/null
  measure "$FLOOR" create-keys bench "$USERS" "$CONCURRENCY" 2>/dev/null
  floor_times+=("$WALL")
done
tool=$(printf '%s\n' "${tool_times[@]}" | median)
floor=$(printf '%s\n' "${floor_times[@]}" | median)
tool_spread=$(printf '%s\n' "${tool_times[@]}" | spread)
floor_spread=$(printf '%s\n' "${floor_times[@]}" | spread)
plan_all=$(printf '%s\n' "${plan_times[@]}" | median)

# --- 2. the AWS CLI, one create-access-key per user, on a sample ----------
AWSCLI=target/bench-awscli
if [ ! -x "$AWSCLI/bin/aws" ]; then
  echo "==> installing the AWS CLI into $AWSCLI (PyPI)" >&2
  python3 -m venv "$AWSCLI"
  "$AWSCLI/bin/pip" install --quiet --disable-pip-version-check awscli
fi
fresh
"$FLOOR" setup cli "$CLI_SAMPLE" 1 2>/dev/null
start=$(secs)
for i in $(seq 0 $((CLI_SAMPLE - 1))); do
  "$AWSCLI/bin/aws" iam create-access-key --user-name "$(printf 'cli-%04d' "$i")" >/dev/null
done
cli_sample=$(awk -v a="$start" -v b="$(secs)" 'BEGIN {printf "%.3f", b-a}')
cli_full=$(awk -v t="$cli_sample" -v s="$CLI_SAMPLE" -v n="$USERS" 'BEGIN {printf "%.1f", t/s*n}')
cli_version=$("$AWSCLI/bin/aws" --version 2>&1 | cut -d' ' -f1)

# --- 3. requests per user for each phase, counted by moto's recorder ------
fresh
"$FLOOR" setup cnt "$COUNT_USERS" 1 2>/dev/null
base=$(( $(date +%s) + 5 ))
count() {  # count LABEL NOW_OFFSET_SECONDS iam-rotate ARGS...
  local label=$1 offset=$2; shift 2
  moto recorder/reset-recording; moto recorder/start-recording
  IAM_ROTATE_NOW=$(at $((base + offset))) "$BIN" -q "$@" >/dev/null
  moto recorder/stop-recording
  "$VENV/bin/python" - "$WORK/recording.jsonl" "$COUNT_USERS" "$label" >>"$WORK/counts.md" <<'PY'
import base64, collections, json, sys, urllib.parse
path, users, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
actions = collections.Counter()
for line in open(path):
    entry = json.loads(line)
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode()
    action = urllib.parse.parse_qs(body).get("Action", ["?"])[0]
    actions[action] += 1
per_process = {a: n for a, n in actions.items() if a in ("GetCallerIdentity", "AssumeRole", "ListUsers")}
per_user = {a: n for a, n in actions.items() if a not in per_process}
total = sum(per_user.values()) / users
detail = ", ".join(f"{a} {n / users:g}" for a, n in sorted(per_user.items())) or "-"
once = ", ".join(f"{a} {n}" for a, n in sorted(per_process.items())) or "-"
print(f"| {label} | **{total:g}** | {detail} | {once} |")
PY
}
: >"$WORK/counts.md"
count "plan --all" 0 plan --all --adoption-wait 0s --quiet-period 4h
count "run: create_second_key" 60 run --all
# Applications: the new key is adopted, the old one is still used.
"$VENV/bin/python" - "$HOME" "$IAM_ROTATE_PLANS_DIR/$ACCOUNT" "$ENDPOINT" <<'PY'
import csv, glob, os, sys, boto3
home, plans, endpoint = sys.argv[1:]
for path in glob.glob(os.path.join(plans, "*.yaml")):
    user = os.path.basename(path)[:-5]
    old = next(l.split(":", 1)[1].strip() for l in open(path) if l.startswith("  id:"))
    with open(os.path.join(home, ".iam-rotate/credentials/123456789012", user + ".csv")) as f:
        new_id, new_secret = list(csv.reader(f))[1]
    # moto stamps last use on any request signed with a key id.
    for key_id, secret in ((new_id, new_secret), (old, "x" * 40)):
        boto3.client("sts", endpoint_url=endpoint, aws_access_key_id=key_id,
                     aws_secret_access_key=secret).get_caller_identity()
PY
count "run: wait_for_adoption → check_last_used (old key in use)" 3600 run --all
count "run: check_last_used, waiting" 7200 run --all
count "run: check_last_used → set_inactive → verify" 21600 run --all
cp "$IAM_ROTATE_PLANS_DIR/$ACCOUNT/cnt-0000.yaml" "$WORK/template.yaml"
count "run: verify waiting" 86400 run --all
count "run: verify → delete → done" $((8 * 86400)) run --all
count "run: done" $((9 * 86400)) run --all
count "report" $((9 * 86400)) report
count "status --account" $((9 * 86400)) status --account "$ACCOUNT"

# --- 4. status over many plan files vs a bare serde_yaml loop -------------
"$VENV/bin/python" - "$WORK/template.yaml" "$WORK/status-plans/$ACCOUNT" "$PLANS" <<'PY'
import os, sys
template, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(template).read()
os.makedirs(folder, exist_ok=True)
for i in range(n):
    name = f"user-{i:05d}"
    with open(os.path.join(folder, name + ".yaml"), "w") as f:
        f.write(text.replace("cnt-0000", name))
PY
plan_bytes=$(stat -c %s "$WORK/template.yaml")
status_times=() json_times=() bare_times=() status_rss=0
for r in $(seq "$REPEAT"); do
  measure "$BIN" --plans-dir "$WORK/status-plans" status --account "$ACCOUNT" >/dev/null
  status_times+=("$WALL"); (( RSS > status_rss )) && status_rss=$RSS
  measure "$BIN" --plans-dir "$WORK/status-plans" --output json status --account "$ACCOUNT" >/dev/null
  json_times+=("$WALL"); (( RSS > status_rss )) && status_rss=$RSS
  measure "$FLOOR" parse-plans "$WORK/status-plans/$ACCOUNT" 2>/dev/null
  bare_times+=("$WALL")
done
status_t=$(printf '%s\n' "${status_times[@]}" | median)
json_t=$(printf '%s\n' "${json_times[@]}" | median)
bare_t=$(printf '%s\n' "${bare_times[@]}" | median)

# --- the table -------------------------------------------------------------
{
  echo "moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)'), $(nproc) CPUs, $USERS users, concurrency $CONCURRENCY, median of $REPEAT (min–max in brackets)"
  echo
  echo "| measure | iam-rotate | reference | ratio |"
  echo "|---|---|---|---|"
  echo "| 1. \`run --all\`, $USERS users through create_second_key | ${tool} s (${tool_spread}) | floor (bare SDK loop, same calls): ${floor} s (${floor_spread}) | **$(ratio "$tool" "$floor")×** the floor |"
  echo "| 2. AWS CLI loop, \`aws iam create-access-key\` per user ($cli_version) | ${tool} s | ${cli_sample} s for $CLI_SAMPLE users → ${cli_full} s for $USERS | CLI takes **$(ratio "$cli_full" "$tool")×** as long |"
  echo "| 4. \`status\` over $PLANS plans (${plan_bytes} B each), table | ${status_t} s | bare serde_yaml loop: ${bare_t} s | **$(ratio "$status_t" "$bare_t")×** |"
  echo "| 4. \`status --output json\` over $PLANS plans | ${json_t} s | bare serde_yaml loop: ${bare_t} s | **$(ratio "$json_t" "$bare_t")×** |"
  echo "| 4. peak RSS, \`run --all\` over $USERS users | $(mb "$run_rss") MB | target < 100 MB | |"
  echo "| 4. peak RSS, \`status\` over $PLANS plans | $(mb "$status_rss") MB | target < 100 MB | |"
  echo "| (\`plan --all\` over $USERS users, for reference) | ${plan_all} s | | |"
  echo
  echo "3. Requests per user for each phase, counted at the endpoint (moto's recorder), $COUNT_USERS users:"
  echo
  echo "| step | requests per user | by action | once per process |"
  echo "|---|---|---|---|"
  cat "$WORK/counts.md"
} | tee "$WORK/results.md"
# The scratch holds moto's throwaway keys (delivered CSVs) and 10,000 plans:
# only the results stay, unless KEEP=1.
if [ "${KEEP:-0}" != 1 ]; then
  rm -rf "$WORK/home" "$WORK/plans" "$WORK/status-plans" "$WORK/recording.jsonl"
fi
echo >&2
echo "==> results kept in $WORK/results.md" >&2
