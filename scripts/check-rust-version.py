#!/usr/bin/env python3
"""Fails when a locked dependency needs a newer Rust than Cargo.toml says.

`rust-version` in Cargo.toml is a promise to whoever builds iam-rotate: with
that toolchain, `cargo build --locked` works. Cargo checks each dependency's
own `rust-version` only against the toolchain in use, so a lock file that
pulls in a crate needing a newer Rust breaks the promise silently. This reads
`cargo metadata` (no network: --locked --offline is tried first) and compares.

    scripts/check-rust-version.py        exit 0, or 1 naming the crates
"""

import json
import subprocess
import sys


def version_key(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def metadata():
    base = ["cargo", "metadata", "--format-version", "1", "--locked"]
    for extra in (["--offline"], []):
        run = subprocess.run(base + extra, capture_output=True, text=True)
        if run.returncode == 0:
            return json.loads(run.stdout)
    sys.stderr.write(run.stderr)
    sys.exit("error: `cargo metadata --locked` failed (above); fix Cargo.lock first")


def main():
    meta = metadata()
    members = set(meta["workspace_members"])
    ours = [p for p in meta["packages"] if p["id"] in members]
    deps = [p for p in meta["packages"] if p["id"] not in members and p.get("rust_version")]
    failed = False
    for package in ours:
        promised = package.get("rust_version")
        if not promised:
            print(f"error: {package['name']} sets no rust-version in Cargo.toml; set it to "
                  f"the newest any locked dependency needs (below)")
            failed = True
            promised = "0"
        too_new = sorted(
            (p for p in deps if version_key(p["rust_version"]) > version_key(promised)),
            key=lambda p: (version_key(p["rust_version"]), p["name"]),
            reverse=True,
        )
        needed = max((p["rust_version"] for p in deps), key=version_key, default=promised)
        if too_new:
            failed = True
            names = ", ".join(f"{p['name']} {p['version']} ({p['rust_version']})"
                              for p in too_new[:8])
            more = f" and {len(too_new) - 8} more" if len(too_new) > 8 else ""
            print(f"error: Cargo.toml says rust-version = \"{promised}\", but locked "
                  f"dependencies need more: {names}{more}. Set rust-version = \"{needed}\" "
                  f"in Cargo.toml (and in README), or pin those crates to older versions "
                  f"with `cargo update -p NAME --precise VERSION`.")
        else:
            print(f"==> rust-version {promised}: every locked dependency builds with it "
                  f"(the newest need is {needed})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
