#!/usr/bin/env bash
# Smoke test of a deployed environment through its public entry (CloudFront -> API Gateway).
# Usage: terraform/scripts/smoke-test.sh ENV
# Checks: /healthz answers without a token; /recommendations refuses a request without one
# (401: the JWT authorizer is on); with a client-credentials token it returns items.
set -euo pipefail

env_name="${1:?usage: smoke-test.sh dev|prod}"
tf_dir="$(cd "$(dirname "$0")/../envs/${env_name}" && pwd)"
output() { terraform -chdir="${tf_dir}" output -raw "$1"; }

api="$(output api_url)"
token_url="$(output token_url)"
pool="$(output cognito_user_pool_id)"
client="$(output cognito_client_id)"

curl --fail --silent --show-error --max-time 10 --retry 5 --retry-delay 10 \
    --retry-all-errors "${api}/healthz" > /dev/null
echo "healthz ok"

unauthorised="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 \
    "${api}/recommendations?user_id=smoke-test&k=5")"
if [[ "${unauthorised}" != "401" ]]; then
    echo "expected 401 without a token, got ${unauthorised}" >&2
    exit 1
fi
echo "auth enforced"

secret="$(aws cognito-idp describe-user-pool-client --user-pool-id "${pool}" \
    --client-id "${client}" --query UserPoolClient.ClientSecret --output text)"
token="$(curl --fail --silent --show-error --max-time 10 --user "${client}:${secret}" \
    --data 'grant_type=client_credentials&scope=recloop/recommendations' "${token_url}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

body="$(curl --fail --silent --show-error --max-time 10 \
    --header "Authorization: Bearer ${token}" \
    "${api}/recommendations?user_id=smoke-test&k=5")"
python3 - "${body}" <<'PY'
import json, sys
answer = json.loads(sys.argv[1])
assert answer["items"], f"no items: {answer}"
assert answer["model_version"], f"no model version: {answer}"
print(f"recommendations ok: model {answer['model_version']}, {len(answer['items'])} items")
PY
