#!/usr/bin/env bash
# Copy this commit's images from the GitLab registry to one environment's ECR repositories.
# Usage: terraform/scripts/push-images.sh ENV     (in a docker job with the aws CLI)
# Tags: serving <sha>, training cpu-<sha> and gpu-<sha>, lambda <function>-<sha>. ECR tags are
# immutable, so a tag that is already there (a retried job) is left alone, never overwritten.
set -euo pipefail

env_name="${1:?usage: push-images.sh dev|prod}"
sha="${CI_COMMIT_SHORT_SHA:?}"
account="$(aws sts get-caller-identity --query Account --output text)"
registry="${account}.dkr.ecr.${AWS_REGION:?}.amazonaws.com"

aws ecr get-login-password --region "${AWS_REGION}" \
    | docker login --username AWS --password-stdin "${registry}"

copy() {
    local source_repo="$1" tag="$2" target_repo="recloop-${env_name}-$1"
    if aws ecr describe-images --repository-name "${target_repo}" \
        --image-ids imageTag="${tag}" > /dev/null 2>&1; then
        echo "${target_repo}:${tag} already in ECR"
        return
    fi
    docker pull "${CI_REGISTRY_IMAGE:?}/${source_repo}:${tag}"
    docker tag "${CI_REGISTRY_IMAGE}/${source_repo}:${tag}" "${registry}/${target_repo}:${tag}"
    docker push "${registry}/${target_repo}:${tag}"
}

copy serving "${sha}"
copy training "cpu-${sha}"
copy training "gpu-${sha}"
for folder in lambdas/*/; do
    copy lambda "$(basename "${folder}")-${sha}"
done
