#!/usr/bin/env bash
# Deterministic simulation (src/sim/harness/): crashes the reference
# rotations at every side effect in turn, then runs random seeds, each a
# fleet, a schedule of commands, time jumps, faults, crashes and two runners
# interleaved, with the invariants checked after every step.
#
#   scripts/simulate.sh                    1,000 seeds from seed 0 (release build)
#   scripts/simulate.sh --seeds 100000     overnight
#   scripts/simulate.sh --first 5000 --seeds 1000
#   scripts/simulate.sh --seed 68          replay one seed and print its trace
#   scripts/simulate.sh --debug ...        use the debug build `cargo test` made (CI)
#   scripts/simulate.sh --no-enumerate ... random seeds only (the unit tests enumerate)
#
# The last line printed is
#   simulate: N seeds, M crash points, K faults, 0 invariant violations
# (M: crashes injected, each at a numbered crash point). On a violation it
# prints the failing seed, its schedule cut down to the steps that matter and
# their trace, and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=--release
while [ "$#" -gt 0 ]; do
  case "$1" in
    --seeds) export IAM_ROTATE_SIM_SEEDS="${2:?--seeds N}"; shift 2 ;;
    --first) export IAM_ROTATE_SIM_FIRST="${2:?--first S}"; shift 2 ;;
    --seed) export IAM_ROTATE_SIM_SEED="${2:?--seed S}"; shift 2 ;;
    --debug) profile=; shift ;;
    --no-enumerate) export IAM_ROTATE_SIM_ENUMERATE=0; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "simulate: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

report=$(mktemp)
log=$(mktemp)
trap 'rm -f "$report" "$log"' EXIT
export IAM_ROTATE_SIM_REPORT="$report"
# shellcheck disable=SC2086 # $profile is empty or one flag
if cargo test --locked $profile --lib sim::harness::simulate_from_env -- --ignored --exact \
  >"$log" 2>&1; then
  cat "$report"
  exit 0
fi
if [ -s "$report" ]; then
  cat "$report"
else
  cat "$log" >&2
  echo "simulate: the simulation did not run (build or test failure above)" >&2
fi
exit 1
