#!/bin/sh
# iam-rotate exec: recipe: store the new key in an existing 1Password item.
#
#   iam-rotate plan USER --deliver 'exec:/path/to/op-item.sh VAULT ITEM'
#
# Runs `op item edit ITEM --vault VAULT --template /dev/stdin` with an item
# template (the format `op item get --format json` prints) setting the
# fields "access key id" and "secret access key". 1Password advises a
# template rather than assignment arguments for sensitive values, since
# arguments are visible to other processes. Needs op (signed in) and python3.
set -eu
[ $# -eq 2 ] || { echo "usage: op-item.sh VAULT ITEM" >&2; exit 2; }
python3 -c '
import json, sys
key = json.load(sys.stdin)
json.dump({
    "fields": [
        {"id": "access_key_id", "label": "access key id", "type": "STRING",
         "value": key["AccessKeyId"]},
        {"id": "secret_access_key", "label": "secret access key", "type": "CONCEALED",
         "value": key["SecretAccessKey"]},
    ],
}, sys.stdout)
' | op item edit "$2" --vault "$1" --template /dev/stdin
