# syntax=docker/dockerfile:1.7
# recloop training image: a SageMaker bring-your-own container. SageMaker runs
# `docker run <image> train`; training/train (on PATH from /opt/program) hands over to
# recloop.training.sagemaker, which reads /opt/ml/input/config and the lake and writes the
# model bundle to /opt/ml/model.
# CPU:  docker build -f docker/training.Dockerfile -t recloop-training:cpu .
# GPU:  docker build -f docker/training.Dockerfile --build-arg VARIANT=gpu -t recloop-training:gpu .
# The GPU variant is for ml.g* instances: implicit's manylinux wheel carries its CUDA build, and
# docker/requirements-gpu.txt adds the libraries it links (RMM, cuBLAS, cuRAND, the CUDA
# runtime) as PyPI wheels. The NVIDIA driver comes from the SageMaker host.

# Justified checkov skips (tests/infra/test_infra_checkov.py requires a reason for each):
#checkov:skip=CKV_DOCKER_2:a SageMaker training job is a batch process; SageMaker watches its exit status, not a health check
#checkov:skip=CKV_DOCKER_3:SageMaker mounts /opt/ml root-owned and runs training containers as root
#checkov:skip=CKV_DOCKER_4:ADD fetches Amazon's RDS CA bundle by URL (BuildKit --chmod); COPY cannot download
#checkov:skip=CKV_DOCKER_7:FROM names the PYTHON_IMAGE build argument, whose default is a pinned python:3.11-slim-bookworm tag
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY docker/requirements-gpu.txt ./requirements-gpu.txt
RUN pip install --no-cache-dir "/src[aws]" \
    && if [ "${VARIANT}" = "gpu" ]; then pip install --no-cache-dir -r requirements-gpu.txt; fi

FROM ${PYTHON_IMAGE} AS runtime
ADD --chmod=0444 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 training/ /opt/program/
# implicit's _cuda.so has no RUNPATH: the loader finds the NVIDIA wheels' libraries only here
# (a folder that does not exist in the CPU variant, where it changes nothing).
ENV PATH=/opt/program:/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# SageMaker mounts /opt/ml owned by root and runs the container as root; no USER here.
WORKDIR /opt/program
