#!/bin/sh
# iam-rotate exec: recipe: store the new key as two GitHub Actions secrets.
#
#   iam-rotate plan USER --deliver 'exec:/path/to/gh-secret.sh OWNER/REPO [PREFIX]'
#
# Sets PREFIX_ACCESS_KEY_ID and PREFIX_SECRET_ACCESS_KEY (PREFIX defaults to
# AWS) in OWNER/REPO. iam-rotate writes the key as one JSON document on this
# script's standard input; each value reaches `gh secret set` on its
# standard input too, never on a command line. Needs gh (logged in) and
# python3.
set -eu
[ $# -ge 1 ] || { echo "usage: gh-secret.sh OWNER/REPO [PREFIX]" >&2; exit 2; }
repo=$1
prefix=${2:-AWS}
doc=$(cat)
# printf is a shell builtin: the document never appears in a process's argv.
field() {
    printf '%s' "$doc" | python3 -c \
        'import json, sys; sys.stdout.write(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
field AccessKeyId | gh secret set "${prefix}_ACCESS_KEY_ID" --repo "$repo"
field SecretAccessKey | gh secret set "${prefix}_SECRET_ACCESS_KEY" --repo "$repo"
