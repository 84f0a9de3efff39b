#!/usr/bin/env bash
# Blue/green deployment of the serving task definition that `terraform apply` just registered.
# Usage: terraform/scripts/deploy-serving.sh ENV        (ENV = dev or prod; run after apply)
# CodeDeploy starts a full-size replacement (green) task set, checks it through the test
# listener, shifts traffic by the group's deployment config, and rolls back by itself when a
# deployment alarm fires. The old (blue) task set stays up for blue_termination_wait_minutes.
set -euo pipefail

env_name="${1:?usage: deploy-serving.sh dev|prod}"
tf_dir="$(cd "$(dirname "$0")/../envs/${env_name}" && pwd)"

output() { terraform -chdir="${tf_dir}" output -raw "$1"; }

app="$(output codedeploy_app_name)"
group="$(output codedeploy_deployment_group_name)"
task_definition="${TASK_DEFINITION_OVERRIDE:-$(output task_definition_arn)}"
container="$(output container_name)"
port="$(output container_port)"

appspec="$(python3 - "${task_definition}" "${container}" "${port}" <<'PY'
import json, sys
task, container, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = {
    "version": 0.0,
    "Resources": [{
        "TargetService": {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "TaskDefinition": task,
                "LoadBalancerInfo": {"ContainerName": container, "ContainerPort": port},
            },
        }
    }],
}
print(json.dumps({"revisionType": "AppSpecContent",
                  "appSpecContent": {"content": json.dumps(spec)}}))
PY
)"

echo "deploying ${task_definition} to ${app}/${group}"
deployment_id="$(aws deploy create-deployment \
    --application-name "${app}" \
    --deployment-group-name "${group}" \
    --description "recloop ${env_name} ${CI_COMMIT_SHORT_SHA:-manual}" \
    --revision "${appspec}" \
    --query deploymentId --output text)"
echo "deployment ${deployment_id} started"
echo "${deployment_id}" > "deployment-${env_name}.id"

# Wait for CodeDeploy's verdict. `aws deploy wait deployment-successful` gives up after 30
# minutes (120 polls of 15 s), and a prod deployment only succeeds once the blue task set has
# been kept for blue_termination_wait_minutes after the traffic shift: 40 minutes or more. The
# wait here is the stack's own figure (output deployment_wait_minutes); a timeout is reported
# as what it is (still running, nothing rolled back), never as a rollback.
wait_minutes="${DEPLOY_WAIT_MINUTES:-$(output deployment_wait_minutes)}"
poll_seconds="${DEPLOY_POLL_SECONDS:-30}"
deadline=$(( $(date +%s) + wait_minutes * 60 ))
while :; do
    status="$(aws deploy get-deployment --deployment-id "${deployment_id}" \
        --query deploymentInfo.status --output text)"
    case "${status}" in
        Succeeded)
            echo "deployment ${deployment_id} succeeded"
            exit 0
            ;;
        Failed|Stopped)
            aws deploy get-deployment --deployment-id "${deployment_id}" \
                --query 'deploymentInfo.[status, errorInformation.code, errorInformation.message]' \
                --output text >&2
            rollback="$(aws deploy get-deployment --deployment-id "${deployment_id}" \
                --query 'deploymentInfo.rollbackInfo.rollbackMessage' --output text)"
            if [[ -n "${rollback}" && "${rollback}" != "None" ]]; then
                echo "deployment ${deployment_id} ${status}; CodeDeploy: ${rollback}" >&2
            else
                echo "deployment ${deployment_id} ${status}; CodeDeploy recorded no rollback:" \
                    "check which task set takes traffic before retrying" >&2
            fi
            exit 1
            ;;
    esac
    if (( $(date +%s) >= deadline )); then
        echo "deployment ${deployment_id} is still ${status} after ${wait_minutes} minutes;" \
            "nothing was rolled back. Follow it: aws deploy get-deployment --deployment-id" \
            "${deployment_id}" >&2
        exit 3
    fi
    sleep "${poll_seconds}"
done
