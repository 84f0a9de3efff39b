"""The training job runner: what SageMaker does between CreateTrainingJob and the job's event.

moto records a training job (and reports it Completed at once) but runs nothing. The runner
polls ListTrainingJobs for jobs it has not run and runs each as SageMaker runs a
bring-your-own container: /opt/ml/input/config/hyperparameters.json (the job's
HyperParameters), inputdataconfig.json and resourceconfig.json; each S3 channel copied into
/opt/ml/input/data/<channel> (File mode; an S3Prefix's objects, or a ManifestFile's keys under
its prefix); SM_* variables and TRAINING_JOB_NAME; then the
image's `train` program (training/train), in its own process with the job's environment. It
uploads /opt/ml/model as model.tar.gz and /opt/ml/output/data as output.tar.gz where the job's
ModelArtifacts say, and sends the "SageMaker Training Job State Change" event (Completed, or
Failed with /opt/ml/output/failure) to the promote function, twice: EventBridge delivers at
least once, and the loop must not care.

moto 5 drops CreateTrainingJob's Environment, so the job's environment is the one
recloop.training.sagemaker.launch sends (harness.terraform.training_job_env).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from recloop.harness.functions import FunctionError, LambdaFunction
from recloop.harness.processes import die_with_parent
from recloop.harness.terraform import ACCOUNT, REGION

log = logging.getLogger(__name__)

TRAIN_PROGRAM = Path(__file__).resolve().parents[3] / "training" / "train"

# (job name, hyperparameters) -> hyperparameters to run with (the demo's sabotage).
HyperparameterHook = Callable[[str, dict[str, str]], dict[str, str]]


@dataclass
class JobRun:
    name: str
    status: str = "InProgress"
    failure: str | None = None
    seconds: float = 0.0
    sabotaged: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "failure_reason": self.failure,
            "seconds": round(self.seconds, 1),
            "sabotaged": self.sabotaged,
            "promote_results": [e.get("result") for e in self.events],
        }


class TrainingJobRunner:
    """Runs the account's new training jobs one at a time (start() / stop())."""

    def __init__(
        self,
        sagemaker: Any,
        s3: Any,
        promote: LambdaFunction,
        work_dir: Path,
        env: dict[str, str],
        hyperparameters: HyperparameterHook | None = None,
    ) -> None:
        self.sagemaker = sagemaker
        self.s3 = s3
        self.promote = promote
        self.work_dir = work_dir
        self.env = env
        self.hook = hyperparameters
        self.jobs: list[JobRun] = []
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="training-jobs", daemon=True)

    def start(self) -> TrainingJobRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=600)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = self._new_jobs()
            except Exception as exc:  # keep polling, as SageMaker keeps running
                log.warning("ListTrainingJobs failed: %s", exc)
                names = []
            for name in names:
                self._seen.add(name)
                self.jobs.append(self.run(name))
            self._stop.wait(0.5)

    def _new_jobs(self) -> list[str]:
        found: list[str] = []
        paginator = self.sagemaker.get_paginator("list_training_jobs")
        for page in paginator.paginate(SortBy="CreationTime", SortOrder="Ascending"):
            found.extend(s["TrainingJobName"] for s in page["TrainingJobSummaries"])
        return [n for n in found if n not in self._seen]

    def run(self, name: str) -> JobRun:
        """Run one job to its end and send its state change event."""
        job = JobRun(name)
        started = time.monotonic()
        described = self.sagemaker.describe_training_job(TrainingJobName=name)
        root = self.work_dir / name / "opt" / "ml"
        try:
            self._prepare(root, described, job)
            job.status, job.failure = self._train(root, described)
            self._upload(root, described)
        except Exception as exc:  # the job's infrastructure failed: the job fails
            log.exception("training job %s", name)
            job.status, job.failure = "Failed", f"ClientError: {exc}"[:1024]
        job.seconds = time.monotonic() - started
        event = self._event(described, job)
        for _ in range(2):  # at least once
            job.events.append({"result": self._deliver(event)})
        return job

    def _prepare(self, root: Path, described: dict[str, Any], job: JobRun) -> None:
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        hp = dict(described.get("HyperParameters") or {})
        if self.hook is not None:
            changed = self.hook(job.name, hp)
            job.sabotaged = changed != hp
            hp = changed
        (config / "hyperparameters.json").write_text(json.dumps(hp))
        channels = described.get("InputDataConfig") or []
        (config / "inputdataconfig.json").write_text(
            json.dumps({c["ChannelName"]: {"TrainingInputMode": "File"} for c in channels})
        )
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )
        for channel in channels:
            source = channel["DataSource"]["S3DataSource"]
            dest = root / "input" / "data" / channel["ChannelName"]
            if source.get("S3DataType") == "ManifestFile":
                self._download_manifest(source["S3Uri"], dest)
            else:
                self._download(source["S3Uri"], dest)

    def _download_manifest(self, uri: str, dest: Path) -> None:
        """A ManifestFile channel: [{"prefix": "s3://b/p/"}, "key", ...], each key copied to
        <channel>/<key>."""
        parsed = urlparse(uri)
        body = self.s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
        head, *keys = json.loads(body.read())
        prefix = urlparse(head["prefix"])
        for key in keys:
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(prefix.netloc, prefix.path.lstrip("/") + key, str(target))

    def _download(self, uri: str, dest: Path) -> None:
        parsed = urlparse(uri)
        prefix = parsed.path.lstrip("/").rstrip("/") + "/"
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=parsed.netloc, Prefix=prefix):
            for item in page.get("Contents", []):
                target = dest / item["Key"][len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(parsed.netloc, item["Key"], str(target))

    def _train(self, root: Path, described: dict[str, Any]) -> tuple[str, str | None]:
        env = {
            **self.env,
            "SM_ML_ROOT": str(root),
            "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
            "SM_MODEL_DIR": str(root / "model"),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            "SM_FAILURE_FILE": str(root / "output" / "failure"),
            "TRAINING_JOB_NAME": described["TrainingJobName"],
        }
        for channel in described.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            env[f"SM_CHANNEL_{name.upper()}"] = str(root / "input" / "data" / name)
        limit = (described.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 3600)
        with (root.parent / "job.log").open("ab") as logfile:
            try:
                done = subprocess.run(
                    [sys.executable, str(TRAIN_PROGRAM)],
                    env=env,
                    cwd=root.parent,
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    timeout=limit,
                    check=False,
                    preexec_fn=die_with_parent,
                )
            except subprocess.TimeoutExpired:
                return "Stopped", f"MaxRuntimeExceeded: {limit} s"
        if done.returncode == 0:
            return "Completed", None
        failure = root / "output" / "failure"
        reason = failure.read_text() if failure.is_file() else f"exit code {done.returncode}"
        return "Failed", f"AlgorithmError: {reason}"

    def _upload(self, root: Path, described: dict[str, Any]) -> None:
        artifact = described["ModelArtifacts"]["S3ModelArtifacts"]
        parsed = urlparse(artifact)
        for folder, key in (
            (root / "model", parsed.path.lstrip("/")),
            (
                root / "output" / "data",
                parsed.path.lstrip("/").replace("model.tar.gz", "output.tar.gz"),
            ),
        ):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                if folder.is_dir():
                    for path in sorted(folder.rglob("*")):
                        tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
            self.s3.put_object(Bucket=parsed.netloc, Key=key, Body=buffer.getvalue())

    def _event(self, described: dict[str, Any], job: JobRun) -> dict[str, Any]:
        detail = {
            "TrainingJobName": job.name,
            "TrainingJobArn": described["TrainingJobArn"],
            "TrainingJobStatus": job.status,
            "SecondaryStatus": job.status,
            "HyperParameters": described.get("HyperParameters") or {},
            "ModelArtifacts": described.get("ModelArtifacts") or {},
            "CreationTime": int(described["CreationTime"].timestamp() * 1000),
        }
        if job.failure:
            detail["FailureReason"] = job.failure
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "SageMaker Training Job State Change",
            "source": "aws.sagemaker",
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [described["TrainingJobArn"]],
            "detail": detail,
        }

    def _deliver(self, event: dict[str, Any]) -> Any:
        """EventBridge's retry policy, shortened: a function error is retried with back-off."""
        for attempt in range(4):
            try:
                return self.promote.invoke(event)
            except FunctionError as exc:
                log.warning("promote failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(1.0 * 2**attempt)
        return {"error": "promote failed after 4 attempts"}
