#!/bin/sh
# iam-rotate exec: recipe: store the new key in a Vault KV secret.
#
#   iam-rotate plan USER --deliver 'exec:/path/to/vault-kv.sh secret/aws/{user}'
#
# Runs `vault kv put PATH AccessKeyId=AKIA… SecretAccessKey=-`: the key id
# (not a secret) is an argument, the secret access key is read by vault from
# its standard input (the `-`). Needs vault (VAULT_ADDR and a token) and
# python3.
set -eu
[ $# -eq 1 ] || { echo "usage: vault-kv.sh PATH" >&2; exit 2; }
doc=$(cat)
field() {
    printf '%s' "$doc" | python3 -c \
        'import json, sys; sys.stdout.write(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
id=$(field AccessKeyId)
field SecretAccessKey | vault kv put "$1" "AccessKeyId=$id" SecretAccessKey=-
