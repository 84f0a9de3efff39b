# syntax=docker/dockerfile:1.7
# recloop serving image: the FastAPI service behind the ALB (docs/deploy.md).
# Build from the repository root: docker build -f docker/serving.Dockerfile -t recloop-serving .
# Runs as a non-root user on a read-only root file system; models are downloaded to, and
# memory-mapped from, /var/cache/recloop (a task volume), so every uvicorn worker shares the
# same pages of the model arrays instead of holding a copy each. Locally, like ECS does:
#   docker run --read-only --tmpfs /tmp -v recloop-cache:/var/cache/recloop -p 8000:8000 ...

# Justified checkov skips (tests/infra/test_infra_checkov.py requires a reason for each):
#checkov:skip=CKV_DOCKER_4:ADD fetches Amazon's RDS CA bundle by URL (BuildKit --chmod); COPY cannot download
#checkov:skip=CKV_DOCKER_7:FROM names the PYTHON_IMAGE build argument, whose default is a pinned python:3.11-slim-bookworm tag
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The package and nothing else: tests, bench and notebooks never reach the image.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 recloop \
    && useradd --system --uid 10001 --gid recloop --no-create-home \
       --home-dir /var/cache/recloop --shell /usr/sbin/nologin recloop \
    && mkdir -p /var/cache/recloop \
    && chown recloop:recloop /var/cache/recloop \
    && chmod 1777 /tmp
# The task mounts Fargate volumes on these paths (terraform/modules/serving, mountPoints). A
# Fargate bind-mount volume is created root-owned 0755 unless the image declares the path a
# VOLUME: then it starts with the image's content, owner and mode (recloop-owned, /tmp 1777),
# and the non-root user on a read-only root file system can write its model cache and temp files.
VOLUME ["/var/cache/recloop", "/tmp"]
# Amazon's CA bundle: DocumentDB accepts TLS connections only (tlsCAFile in RECLOOP_FEATURES_URI).
ADD --chmod=0444 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WEB_CONCURRENCY=2 \
    RECLOOP_MODEL_CACHE_DIR=/var/cache/recloop/models
WORKDIR /var/cache/recloop
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# SIGTERM lets uvicorn drain requests in flight (ECS stopTimeout gives it 30 s).
STOPSIGNAL SIGTERM
# The worker count comes from the environment (ECS sets WEB_CONCURRENCY per task size); exec
# replaces the shell, so recloop runs as PID 1 and receives SIGTERM itself.
CMD ["sh", "-c", "exec recloop serve --host 0.0.0.0 --port 8000 --workers \"${WEB_CONCURRENCY}\""]
