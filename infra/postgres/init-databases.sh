#!/bin/sh
# Databases and roles of the server stack, created once on an empty data volume. The postgres image runs this
# from /docker-entrypoint-initdb.d/; tests/test_infra.py runs it against a throwaway PostgreSQL (PGHOST/PGPORT).
#   mlflow       MLflow tracking store (runs, metrics, model registry), owner mlflow
#   mlflow_auth  MLflow basic-auth users and permissions, owner mlflow
#   prefect      Prefect server (flows, deployments, runs), owner prefect
# Passwords: MLFLOW_DB_PASSWORD and PREFECT_DB_PASSWORD from the environment (infra/.env).
set -eu
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"
: "${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
     -v mlflow_pw="$MLFLOW_DB_PASSWORD" -v prefect_pw="$PREFECT_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE ROLE prefect LOGIN PASSWORD :'prefect_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE prefect OWNER prefect;
SQL
