#!/bin/sh
# Render the S3 identity file from the container's env (secrets come from infra/.env, never the repo), then run
# SeaweedFS in single-process mode with the S3 gateway on 8333.
set -eu
: "${AWS_ACCESS_KEY_ID:?set in infra/.env}" "${AWS_SECRET_ACCESS_KEY:?set in infra/.env}"
cat > /tmp/s3.json <<JSON
{"identities": [{"name": "sidrec",
  "credentials": [{"accessKey": "${AWS_ACCESS_KEY_ID}", "secretKey": "${AWS_SECRET_ACCESS_KEY}"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
exec weed mini -dir=/data -s3.port=8333 -s3.config=/tmp/s3.json -master.telemetry=false -webdav=false -admin.ui=false
