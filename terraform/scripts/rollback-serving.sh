#!/usr/bin/env bash
# Roll the serving service back.
# Usage: terraform/scripts/rollback-serving.sh ENV [DEPLOYMENT_ID]
#  - while the last deployment still holds the blue task set (within
#    blue_termination_wait_minutes), stop it with auto-rollback: traffic returns to blue at once;
#  - later, deploy the previous task definition revision blue/green, like any deployment.
# Rolling back a *model* is different: approve the previous model version (docs/deploy.md).
set -euo pipefail

env_name="${1:?usage: rollback-serving.sh dev|prod [deployment-id]}"
tf_dir="$(cd "$(dirname "$0")/../envs/${env_name}" && pwd)"
output() { terraform -chdir="${tf_dir}" output -raw "$1"; }

app="$(output codedeploy_app_name)"
group="$(output codedeploy_deployment_group_name)"
deployment_id="${2:-$(aws deploy list-deployments --application-name "${app}" \
    --deployment-group-name "${group}" --query 'deployments[0]' --output text)}"

status="$(aws deploy get-deployment --deployment-id "${deployment_id}" \
    --query deploymentInfo.status --output text)"
if [[ "${status}" == "InProgress" || "${status}" == "Ready" ]]; then
    echo "stopping ${deployment_id} (${status}) with auto-rollback: traffic goes back to blue"
    aws deploy stop-deployment --deployment-id "${deployment_id}" --auto-rollback-enabled
    exit 0
fi

cluster="$(output ecs_cluster_name)"
service="$(output ecs_service_name)"
current="$(aws ecs describe-services --cluster "${cluster}" --services "${service}" \
    --query 'services[0].taskDefinition' --output text)"
family="${current##*/}"
family="${family%:*}"
# The newest ACTIVE revision older than the running one (task definitions are kept with
# skip_destroy). Not simply "the newest other one": after an earlier rollback that would be
# the newer, broken revision.
current_revision="${current##*:}"
previous=""
for arn in $(aws ecs list-task-definitions --family-prefix "${family}" --status ACTIVE \
    --sort DESC --query 'taskDefinitionArns[]' --output text); do
    if (( ${arn##*:} < current_revision )); then
        previous="${arn}"
        break
    fi
done
if [[ -z "${previous}" || "${previous}" == "None" ]]; then
    echo "no earlier revision of ${family} to roll back to" >&2
    exit 2
fi
echo "redeploying ${previous} (was ${current}) blue/green"
TASK_DEFINITION_OVERRIDE="${previous}" "$(dirname "$0")/deploy-serving.sh" "${env_name}"
