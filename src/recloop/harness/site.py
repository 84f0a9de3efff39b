"""The demo's AWS site: the production wiring on AWS APIs served by moto on 127.0.0.1.

    weblogs -> Kinesis -> weblog_processor (event source mapping) -> lake in S3
    EventBridge schedule -> monitor -> CreateTrainingJob -> training job (the runner)
        -> job state change -> promote -> SageMaker model package group
    recloop serve (2 workers, sagemaker://, hot swap) -> impressions -> Kinesis -> the lake

Each function runs its deployed handler in its own process with the environment Terraform
gives it (harness.terraform) plus the endpoint; the training job runs training/train; the API
is `recloop serve` with the serving task's environment. This process holds the moto server,
plays AWS's pollers and schedules, and reads the results (lake, registry, decision log) through
clients of its own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from recloop.errors import RecloopError
from recloop.harness import terraform as tf
from recloop.harness.aws import LoopbackAws
from recloop.harness.functions import FunctionError, LambdaFunction
from recloop.harness.kinesis import KinesisEventSource
from recloop.harness.processes import die_with_parent, exit_on_sigterm
from recloop.harness.sagemaker import TrainingJobRunner
from recloop.lake import Lake
from recloop.loop.demo import DemoConfig
from recloop.loop.server import free_port
from recloop.monitoring.decisions import Action, Decision, DecisionLog
from recloop.registry import ModelRegistry
from recloop.registry.sagemaker import SageMakerRegistry

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
LAMBDAS = REPO / "lambdas"
# What a process needs from ours to run Python at all (a Lambda image has its own).
_PASSED = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
_PUT_CHUNK = 500  # PutRecords takes at most 500 records


class AwsSite:
    """`recloop demo --aws`'s site (see the module docstring)."""

    def __init__(self, config: DemoConfig, root: Path) -> None:
        if not (LAMBDAS / "monitor" / "handler.py").is_file():
            raise RecloopError(f"the AWS demo runs from a checkout: {LAMBDAS} is missing")
        exit_on_sigterm()
        self.config = config
        self.root = root
        r = tf.Resources()
        self.resources = r
        self.aws = LoopbackAws(r)
        self._started: list[Any] = []
        try:
            self._start(config, root, r)
        except BaseException:
            self.close()
            raise

    def _start(self, config: DemoConfig, root: Path, r: tf.Resources) -> None:
        features_uri = "sqlite:///" + str(root / "features.db")
        r = self.resources = self.aws.create_resources(
            {
                "features": features_uri,  # no DocumentDB runs here
                "candidates": "inprocess://",  # no Elasticsearch either
                "visitor_key": f"recloop-demo-{uuid.uuid4().hex}",
                "origin": uuid.uuid4().hex,  # CloudFront's origin header (serving.origin)
            }
        )
        s3, sagemaker = self.aws.client("s3"), self.aws.client("sagemaker")
        self.lake = Lake.from_uri(r.lake_uri, s3_client=s3)
        self.registry: ModelRegistry = SageMakerRegistry(
            r.model_package_group,
            r.registry_artifacts_uri,
            sagemaker_client=sagemaker,
            s3_client=s3,
        )
        self.decisions = DecisionLog(
            tf.loop_env(r)["RECLOOP_MONITOR_DECISION_LOG_URI"], s3_client=s3
        )
        self.features_uri = features_uri
        self.service_metrics_uri = (root / "metrics" / "service.jsonl").as_uri()
        base = {k: v for k, v in os.environ.items() if k in _PASSED} | self.aws.env()
        clock = {"RECLOOP_LOOP_CONFIG": json.dumps(config.loop_config().to_dict())}
        logs = root / "logs"
        self.functions = {
            "weblog_processor": LambdaFunction(
                "weblog_processor",
                LAMBDAS / "weblog_processor" / "handler.py",
                base | tf.weblog_processor_env(r),
                logs / "weblog_processor.log",
            ),
            "monitor": LambdaFunction(
                "monitor",
                LAMBDAS / "monitor" / "handler.py",
                base | tf.monitor_env(r) | clock,
                logs / "monitor.log",
            ),
            "promote": LambdaFunction(
                "promote",
                LAMBDAS / "promote" / "handler.py",
                base | tf.promote_env(r) | clock,
                logs / "promote.log",
            ),
        }
        self._started.extend(self.functions.values())
        # Terraform's batching window (5 s) and retries (3); batch_size 2,000 instead of the
        # module's default 500 (a variable): one function process plays every concurrent
        # invocation here, and a batch's fixed costs (a lake object per hour, a feature-store
        # transaction) are paid four times less often, so ingest keeps up on a busy machine.
        self.weblogs = KinesisEventSource(
            self.aws.client("kinesis"),
            r.stream,
            self.functions["weblog_processor"],
            batch_size=2_000,
            window=5.0,
            max_retries=3,
        ).start()
        self._started.append(self.weblogs)
        self.jobs = TrainingJobRunner(
            sagemaker,
            s3,
            self.functions["promote"],
            root / "sagemaker",
            base | tf.training_job_env(r),
            hyperparameters=self._sabotage if config.sabotage else None,
        ).start()
        self._started.append(self.jobs)
        # The simulated users come in as CloudFront forwards requests: with its origin header.
        self.headers = {"X-Origin-Verify": self.aws.secret_value(r.origin_secret_arn)}
        self._server: subprocess.Popen[bytes] | None = None
        self._server_log: IO[bytes] | None = None
        self._base = base
        self._known: set[str] = set()
        self._schedules = 0

    # ---- the demo's calls ----------------------------------------------------------------------

    def ingest_history(self, records: list[dict[str, Any]], end: datetime) -> None:
        """Put the weblogs on the stream (as Logstash does) and wait until all were handed on."""
        kinesis = self.aws.client("kinesis")
        for i in range(0, len(records), _PUT_CHUNK):
            chunk = records[i : i + _PUT_CHUNK]
            entries = [
                {
                    "Data": json.dumps(rec, default=str).encode(),
                    "PartitionKey": str(rec.get("user_id") or rec.get("visitor_id") or i),
                }
                for rec in chunk
            ]
            while entries:
                answer = kinesis.put_records(StreamName=self.resources.stream, Records=entries)
                entries = [
                    entry
                    for entry, result in zip(entries, answer["Records"], strict=True)
                    if "ErrorCode" in result
                ]
        if not self.weblogs.drain(len(records), timeout=300):
            raise RecloopError("the weblog stream was not drained in 5 minutes")

    def step(self, now: datetime) -> list[Decision]:
        """An EventBridge scheduled event to the monitor (now and then delivered twice)."""
        self._schedules += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": tf.ACCOUNT,
            "time": now.astimezone(UTC).isoformat(),
            "region": tf.REGION,
            "resources": [f"arn:aws:events:{tf.REGION}:{tf.ACCOUNT}:rule/recloop-demo-schedule"],
            "detail": {},
        }
        deliveries = 2 if self._schedules % 10 == 0 else 1  # EventBridge: at least once
        for _ in range(deliveries):
            try:
                self.functions["monitor"].invoke(event)
            except FunctionError as exc:
                log.warning("monitor pass failed: %s", exc)  # the next tick runs another
        new = [d for d in self.decisions.list() if d.decision_id not in self._known]
        self._known.update(d.decision_id for d in new)
        return new

    def start_api(self) -> str:
        r = self.resources
        port = free_port()
        # ECS injects the task definition's secrets as values.
        secrets = {k: self.aws.secret_value(arn) for k, arn in tf.serving_secrets(r).items()}
        guard_minutes = (self.config.guard_window + self.config.attribution) / 60.0
        env = (
            self._base
            | tf.serving_env(r)
            | secrets
            | {
                "RECLOOP_MODEL_CACHE_DIR": str(self.root / "serving-cache"),
                "RECLOOP_MONITOR_SERVICE_METRICS_URI": (
                    self.root / "metrics" / "api.jsonl"
                ).as_uri(),
                "RECLOOP_WATCH_INTERVAL_SECONDS": "0.5",
                # The guard's held-back arm on the demo's clock (as the embedded demo's).
                "RECLOOP_GUARD_WINDOW_MINUTES": str(guard_minutes),
                "RECLOOP_GUARD_HOLDBACK_SHARE": str(self.config.holdback_share),
                "RECLOOP_BACKEND_TIMEOUT_MS": "1000",
            }
        )
        self._server_log = (self.root / "logs" / "serving.log").open("ab")
        self._server = subprocess.Popen(
            [sys.executable, "-c", "from recloop.cli import main; main()", "serve",
             "--port", str(port), "--workers", env["WEB_CONCURRENCY"], "--no-catalog"],
            env=env,
            stdout=self._server_log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RecloopError(f"recloop serve exited ({self._server.returncode}): see logs")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2, headers=self.headers)
                if ready.status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RecloopError("recloop serve did not become ready in 3 minutes")

    def stop_api(self) -> None:
        if self._server is not None:
            self._server.terminate()  # SIGTERM: the workers drain and flush their event sinks
            try:
                self._server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self._server_log is not None:
            self._server_log.close()
            self._server_log = None

    def close(self) -> None:
        self.stop_api()
        for part in reversed(self._started):
            try:
                part.stop() if hasattr(part, "stop") else part.close()
            except Exception:  # closing the rest matters more
                log.exception("stopping %s", part)
        self.aws.stop()

    def summary(self) -> dict[str, Any]:
        jobs = [job.to_dict() for job in self.jobs.jobs]
        return {
            "backend": "aws",
            "aws_endpoint": self.aws.endpoint,
            "training_jobs": jobs,
            "lambda_invocations": {n: f.invocations for n, f in self.functions.items()},
            "lambda_errors": {n: f.errors for n, f in self.functions.items()},
            "weblog_stream": {
                "batches": self.weblogs.stats.batches,
                "records": self.weblogs.stats.records,
                "retries": self.weblogs.stats.retries,
                "given_up": self.weblogs.stats.given_up,
            },
        }

    # ---- --sabotage ---------------------------------------------------------------------------

    def _sabotage(self, job: str, hp: dict[str, str]) -> dict[str, str]:
        """A bad training image for the first retrain after the first model, until a rollback:
        the job fits ALS with hyperparameters that still pass the offline gate."""
        retrains = self.decisions.list(actions=[Action.RETRAIN])
        mine = [d for d in retrains if job.startswith(str(d.evidence.get("job")) + "-")]
        if not mine or mine[-1].trigger == "no_champion":
            return hp
        if self.decisions.list(actions=[Action.ROLLBACK]):
            return hp
        cfg = self.config
        return {
            **hp,
            "families": json.dumps(["als"]),
            "params": json.dumps({**cfg.sabotage_params, "random_state": cfg.seed}),
            "search_budget": "1",
            "validation_days": "0.0",
        }
