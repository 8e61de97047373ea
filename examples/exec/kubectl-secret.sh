#!/bin/sh
# iam-rotate exec: recipe: store the new key in a Kubernetes Secret.
#
#   iam-rotate plan USER --deliver 'exec:/path/to/kubectl-secret.sh NAMESPACE NAME'
#
# Creates or replaces Secret NAME in NAMESPACE with the keys
# AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. The manifest is built from
# the JSON document on standard input and piped to `kubectl apply -f -`:
# the same result as `kubectl create secret generic NAME --from-literal=…
# --dry-run=client -o yaml | kubectl apply -f -`, but with no secret on a
# command line (--from-literal would put it in kubectl's argv). Needs kubectl
# (with a context) and python3.
set -eu
[ $# -eq 2 ] || { echo "usage: kubectl-secret.sh NAMESPACE NAME" >&2; exit 2; }
python3 -c '
import json, sys
key = json.load(sys.stdin)
json.dump({
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {"namespace": sys.argv[1], "name": sys.argv[2]},
    "stringData": {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    },
}, sys.stdout)
' "$1" "$2" | kubectl apply -f -
