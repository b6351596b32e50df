#!/bin/sh
# Run a command with secrets in its environment, read from files: SECRET_ENV="VARIABLE=name …"
# exports each VARIABLE from /run/secrets/name (where compose and the Kubernetes manifests
# mount them), so no value appears in a manifest, on a command line or in `docker inspect`.
set -eu
for pair in ${SECRET_ENV:-}; do
  export "${pair%%=*}=$(cat "/run/secrets/${pair#*=}")"
done
exec "$@"
