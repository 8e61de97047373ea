#!/usr/bin/env bash
# Runs every check and test of iam-rotate on a fresh machine: installs moto's
# server into ./.venv (pinned, from scripts/requirements-test.txt) when it is
# missing or stale, checks that Cargo.toml's rust-version covers every locked
# dependency, then runs rustfmt, clippy, the checks of the deployment
# recipes (scripts/check-deploy.py, on a full run) and `cargo test`.
#
#   scripts/test.sh                 everything
#   scripts/test.sh --test it drift extra arguments go to `cargo test`
#
# The integration tests start one moto_server per test on a free loopback
# port. Without moto they are skipped with a note, except under CI=true,
# where they fail: a green CI run never hides a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=scripts/requirements-test.txt
venv=.venv
stamp="$venv/.requirements"
if ! cmp -s "$requirements" "$stamp" 2>/dev/null || [ ! -x "$venv/bin/moto_server" ]; then
  echo "==> installing moto into $venv (pinned by $requirements)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# A moto that cannot start must fail here, loudly, not skip tests later.
"$venv/bin/python" -c 'import moto.server, moto; print("==> moto", moto.__version__)'
export IAM_ROTATE_MOTO_SERVER="$PWD/$venv/bin/moto_server"

# Cargo.toml's rust-version must cover every locked dependency's own.
python3 scripts/check-rust-version.py

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
if [ "$#" -eq 0 ]; then
  # Unit and integration tests; the crate has no doc tests, whose empty
  # run would otherwise be the last line printed.
  set -- --lib --bins --tests
  # The recipes in deploy/ are parsed by the binary the tests build, so
  # build it first, exactly as `cargo test` will (no second compile).
  echo "==> deployment recipes (scripts/check-deploy.py)"
  cargo test --locked --no-run "$@"
  "$venv/bin/python" scripts/check-deploy.py --binary "${CARGO_TARGET_DIR:-target}/debug/iam-rotate"
fi
echo "==> cargo test"
cargo test --locked "$@"
if [ "$#" -eq 3 ] && [ "$1" = --lib ]; then
  # The deterministic simulation (src/sim/harness/): the unit tests above
  # crashed the reference rotations at every side effect; now a few hundred
  # random seeds, on the debug build just made. scripts/simulate.sh --seeds N
  # runs more (release).
  echo "==> scripts/simulate.sh --debug --no-enumerate --seeds 300"
  scripts/simulate.sh --debug --no-enumerate --seeds 300
fi
