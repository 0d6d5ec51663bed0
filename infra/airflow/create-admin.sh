#!/bin/sh
# Create the first Airflow admin for the FAB auth manager (infra/docker-compose.yml, service airflow-create-admin).
# Username and email come from infra/.env; the password from the docker secret airflow_admin_password (file
# infra/secrets/airflow_admin_password, gitignored), mounted into this one-shot service only, so no other
# container, task or `docker inspect` sees it. Idempotent: an existing user is left as it is (change a password
# with `airflow users reset-password`).
set -eu
: "${AIRFLOW_ADMIN_USERNAME:?set in infra/.env}" "${AIRFLOW_ADMIN_EMAIL:?set in infra/.env}"
password_file="${AIRFLOW_ADMIN_PASSWORD_FILE:-/run/secrets/airflow_admin_password}"
if [ ! -s "$password_file" ]; then
  echo "create-admin: $password_file is missing or empty (write infra/secrets/airflow_admin_password)" >&2
  exit 1
fi
password="$(cat "$password_file")"
exec airflow users create --role Admin --username "$AIRFLOW_ADMIN_USERNAME" --email "$AIRFLOW_ADMIN_EMAIL" \
  --firstname Sidrec --lastname Admin --password "$password"
