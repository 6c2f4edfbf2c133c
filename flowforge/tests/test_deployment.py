"""The ways to run FlowForge for real agree with the Procfile: docker-compose.yml,
deploy/kubernetes.yaml, deploy/prometheus.yml and the Dockerfile are read and compared
(CI has no Docker), and the Procfile itself runs a DAG under honcho, Flower watching."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from testkit.engine import ROOT, database_url, descendant_pids, process_table, wait_for
from testkit.web import free_port

PROCESSES = ("web", "worker", "beat", "flower")
SETTINGS = ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "LOG_FORMAT")
WORKER_METRICS_PORT = "9100"


def expand_defaults(command: str) -> str:
    """A Procfile command as a deployment that sets none of its variables runs it:
    `${NAME:-default}` is the default, `${NAME}` nothing."""
    return re.sub(r"\$\{\w+(?::-([^}]*))?\}", lambda match: match.group(1) or "", command)


def procfile(name: str = "Procfile") -> dict[str, list[str]]:
    """Process name -> its command's words, `exec` (and an `env VAR=...` prefix) left out."""
    commands = {}
    for line in (ROOT / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        process, _, command = line.partition(":")
        words = shlex.split(expand_defaults(command))
        if words[0] == "exec":
            words = words[1:]
        if words[0] == "env":
            words = words[1:]
            while "=" in words[0]:
                words = words[1:]
        commands[process.strip()] = words
    return commands


def assert_runs_as_procfile(process: str, words: list[str], where: str) -> None:
    """The same program with the Procfile's arguments, in its order; more may follow
    (a worker's `-n` name)."""
    expected = procfile()[process]
    assert words[: len(expected)] == expected, f"{where}: {words} is not the Procfile's {expected}"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def words_of(command: str | list[str]) -> list[str]:
    """A compose command's words (compose takes a string or a list)."""
    return shlex.split(command) if isinstance(command, str) else command


def compose_processes() -> dict[str, list[str]]:
    """Procfile process name -> the compose services that run it (`worker-1`: worker)."""
    found: dict[str, list[str]] = {}
    for service in compose()["services"]:
        process = re.sub(r"-\d+$", "", service)
        if process in PROCESSES:
            found.setdefault(process, []).append(service)
    return found


def kubernetes() -> list[dict]:
    text = (ROOT / "deploy" / "kubernetes.yaml").read_text()
    return [document for document in yaml.safe_load_all(text) if document]


def k8s_objects(kind: str) -> dict[str, dict]:
    """Objects of one kind by component label (or name)."""
    found = {}
    for document in kubernetes():
        if document["kind"] == kind:
            labels = document["metadata"].get("labels", {})
            name = labels.get("app.kubernetes.io/component") or document["metadata"]["name"]
            found[name] = document
    return found


def only_container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def test_the_procfile_names_the_four_processes_and_the_worker_sends_task_events():
    commands = procfile()
    assert tuple(commands) == PROCESSES
    assert "-E" in commands["worker"]  # what Flower shows comes from task events
    assert [word for word in commands["flower"] if word.startswith("--port")] == ["--port=5555"]


def test_compose_runs_each_procfile_process_with_its_command():
    services, by_process = compose()["services"], compose_processes()
    assert set(by_process) == set(PROCESSES)
    assert len(by_process["worker"]) == 2 and len(by_process["beat"]) == 1
    for process, names in by_process.items():
        for name in names:
            assert_runs_as_procfile(process, words_of(services[name]["command"]), name)


def test_compose_migrates_once_before_the_processes_start_on_healthy_services():
    services = compose()["services"]
    assert words_of(services["migrate"]["command"]) == [
        "python", "manage.py", "migrate", "--noinput",
    ]  # fmt: skip
    assert "healthcheck" in services["db"] and "healthcheck" in services["redis"]
    for names in compose_processes().values():
        for name in names:
            waits_for = services[name]["depends_on"]
            assert waits_for["migrate"] == {"condition": "service_completed_successfully"}, name
            assert waits_for["db"] == waits_for["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}


def test_compose_gives_every_process_the_settings_a_deployment_needs():
    services = compose()["services"]
    for name in [*sum(compose_processes().values(), []), "migrate"]:
        environment = services[name]["environment"]
        assert set(SETTINGS) <= set(environment), name
        assert environment["LOG_FORMAT"] == "json"
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?"), "no key in the file"
        assert environment["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert environment["DATABASE_URL"].startswith("postgres://")


def test_prometheus_scrapes_web_each_worker_and_flower_where_they_serve():
    services, by_process = compose()["services"], compose_processes()
    assert (
        "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (services["prometheus"]["volumes"])
    )
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    web_bind = procfile()["web"][procfile()["web"].index("--bind") + 1]
    flower_port = procfile()["flower"][-1].removeprefix("--port=")
    workers = by_process["worker"]
    for name in workers:
        assert services[name]["environment"]["FLOWFORGE_WORKER_METRICS_PORT"] == "9100"
    assert {f"web:{web_bind.rsplit(':', 1)[1]}", f"flower:{flower_port}"} <= targets
    assert {f"{name}:{WORKER_METRICS_PORT}" for name in workers} <= targets
    assert set(workers) == {"worker-1", "worker-2"}


def test_kubernetes_runs_each_procfile_process_with_its_command():
    deployments = k8s_objects("Deployment")
    assert set(deployments) == set(PROCESSES)
    for process, deployment in deployments.items():
        container = only_container(deployment)
        words = [*container.get("command", []), *container.get("args", [])]
        assert_runs_as_procfile(process, words, f"Deployment {process}")
    assert deployments["web"]["spec"]["replicas"] == 2
    assert deployments["worker"]["spec"]["replicas"] == 2
    (migrate,) = k8s_objects("Job").values()
    assert only_container(migrate)["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_kubernetes_runs_one_beat_even_during_a_rollout():
    beat = k8s_objects("Deployment")["beat"]["spec"]
    assert (beat["replicas"], beat["strategy"]) == (1, {"type": "Recreate"})


def test_kubernetes_workers_serve_metrics_that_prometheus_is_told_of():
    worker = k8s_objects("Deployment")["worker"]["spec"]["template"]
    container = only_container({"spec": {"template": worker}})
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    assert env["FLOWFORGE_WORKER_METRICS_PORT"] == WORKER_METRICS_PORT
    assert worker["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": WORKER_METRICS_PORT,
        "prometheus.io/path": "/metrics",
    }
    for process in ("web", "flower"):
        pod = k8s_objects("Deployment")[process]["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true", process


def test_kubernetes_settings_reach_every_process_and_services_front_web_and_flower():
    config = {}
    for kind, key in (("ConfigMap", "data"), ("Secret", "stringData")):
        for document in k8s_objects(kind).values():
            config[(kind, document["metadata"]["name"])] = document[key]
    workloads = [*k8s_objects("Deployment").values(), *k8s_objects("Job").values()]
    for workload in workloads:
        sources = only_container(workload)["envFrom"]
        names = [
            ("ConfigMap", source["configMapRef"]["name"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"]["name"])
            for source in sources
        ]
        given = {key: value for name in names for key, value in config[name].items()}
        assert set(SETTINGS) <= set(given), workload["metadata"]["name"]
        assert given["LOG_FORMAT"] == "json"
    services = k8s_objects("Service")
    assert set(services) == {"web", "flower"}
    for process, service in services.items():
        selector = service["spec"]["selector"]
        assert selector["app.kubernetes.io/component"] == process


def test_the_image_is_built_in_stages_and_runs_as_a_user_of_its_own():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [index for index, line in enumerate(lines) if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    runtime = lines[stages[-1] :]
    users = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "EXPOSE 8000" in runtime
    (cmd,) = [line for line in runtime if line.upper().startswith("CMD ")]
    assert json.loads(cmd[len("CMD ") :]) == procfile()["web"]


def test_the_embedded_setup_leaves_flower_out():
    """The filesystem broker keeps no auto-delete or expiry for event queues: once Flower
    stops, its queue would collect every event of every worker for good (README)."""
    assert set(procfile("Procfile.embedded")) == {"web", "worker", "beat"}
    assert "-E" not in procfile("Procfile.embedded")["worker"]


# --- The Procfile itself, under honcho -------------------------------------------------

SMOKE_DAG = """
id: procfile-smoke
tasks:
  - id: hello
    command: echo hello
  - id: world
    command: echo world
    depends_on: [hello]
"""


class Honcho:
    """`honcho start -f Procfile`, in a session of its own as a terminal would run it."""

    def __init__(self, env: dict, log: Path) -> None:
        self.env, self.log = env, log
        self.seen: set[int] = set()  # every process seen below it, for the cleanup
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"honcho exited ({self.process.returncode}):\n{self.output()}")

    def answers(self, url: str) -> requests.Response | None:
        self.check_alive()
        try:
            response = requests.get(url, timeout=2)
        except requests.RequestException:
            return None
        return response if response.status_code == 200 else None

    def ctrl_c(self) -> list[int]:
        """SIGINT to honcho's group, as Ctrl-C sends it; the pids it had started."""
        started = descendant_pids(self.process.pid)
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(30)
        return started

    def look(self) -> None:
        self.seen.update(descendant_pids(self.process.pid))

    def kill(self) -> None:
        """Whatever is left, its processes' groups included (each runs in its own)."""
        self.look()
        groups = {self.process.pid}
        for pid in self.alive(sorted(self.seen)):
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    @staticmethod
    def alive(pids: list[int]) -> list[int]:
        living = {pid for pid, state, _parent, _group in process_table() or [] if state != "Z"}
        return [pid for pid in pids if pid in living]


def flower_counts(metrics: str, metric: str, **labels: str) -> float:
    """The sum of one Flower metric's samples whose labels include these."""
    total = 0.0
    for match in re.finditer(rf"^{metric}\{{([^}}]*)\}} (\S+)$", metrics, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_procfile_under_honcho_runs_a_dag_flower_sees_it_and_ctrl_c_stops_all(tmp_path):
    from django.core.management import call_command
    from django.db import connection

    token = io.StringIO()
    call_command("api_token", "procfile", "--role", "admin", stdout=token)
    auth = {"Authorization": f"Token {token.getvalue().strip()}"}
    web_port, flower_port = free_port(), free_port()
    web, flower = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{flower_port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "PORT": str(web_port),
        "FLOWER_PORT": str(flower_port),
        # Queues of its own: the session's worker (if one runs) cannot take these tasks.
        "FLOWFORGE_QUEUE_PREFIX": os.environ.get("FLOWFORGE_QUEUE_PREFIX", "") + "procfile.",
        "WEB_CONCURRENCY": "1",
        # Its processes' counts for /metrics, apart from the session's (one host: shared).
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FLOWFORGE_TEST_DB_NAME", None)
    honcho = Honcho(env, tmp_path / "honcho.log")
    try:
        wait_for(lambda: honcho.answers(f"{web}/health"), timeout=40, message="web")
        wait_for(lambda: honcho.answers(f"{flower}/healthcheck"), timeout=40, message="flower")

        def flower_sees_the_worker() -> bool:
            metrics = honcho.answers(f"{flower}/metrics")
            return bool(metrics) and flower_counts(metrics.text, "flower_worker_online") >= 1

        # Events sent before Flower listens are gone: wait until the worker's reach it.
        wait_for(flower_sees_the_worker, timeout=30, interval=0.2, message="flower's worker")
        honcho.look()

        submitted = requests.post(
            f"{web}/api/v1/dags",
            data=SMOKE_DAG,
            headers={**auth, "Content-Type": "application/yaml"},
            timeout=10,
        )
        assert submitted.status_code == 201, submitted.text
        triggered = requests.post(
            f"{web}/api/v1/dags/procfile-smoke/runs", json={}, headers=auth, timeout=10
        )
        assert triggered.status_code == 201, triggered.text
        run_url = f"{web}/api/v1/runs/{triggered.json()['run_id']}"

        def final_state() -> str | None:
            honcho.check_alive()
            state = requests.get(run_url, headers=auth, timeout=5).json()["state"]
            return state if state in ("success", "failed", "cancelled") else None

        assert wait_for(final_state, timeout=30, interval=0.2, message="the run") == "success"
        tasks = requests.get(f"{run_url}/tasks", headers=auth, timeout=5).json()
        tasks = tasks.get("results", tasks) if isinstance(tasks, dict) else tasks
        assert {task["task_id"]: task["state"] for task in tasks} == {
            "hello": "success",
            "world": "success",
        }
        assert all(task["worker"].startswith("celery@") for task in tasks), tasks

        def flower_saw_them_succeed() -> bool:
            metrics = honcho.answers(f"{flower}/metrics")
            return bool(metrics) and (
                flower_counts(metrics.text, "flower_events_total", type="task-succeeded") >= 2
            )

        wait_for(flower_saw_them_succeed, timeout=15, interval=0.2, message="flower's events")
        scraped = requests.get(f"{web}/metrics", timeout=10)
        assert scraped.status_code == 200
        # Its tasks counted by the worker reach the web's scrape; Flower's own metrics are
        # scraped from Flower only, so none of them is counted twice.
        assert "flowforge_tasks_succeeded_total{" in scraped.text
        assert "flower_" not in scraped.text

        started = honcho.ctrl_c()
    finally:
        if honcho.process.poll() is None:
            honcho.kill()

    output = honcho.output()
    print(f"--- honcho's output ---\n{output[-6000:]}")  # shown when the test fails
    for process in PROCESSES:
        assert re.search(rf"\b{process}(\.\d+)? stopped \(rc=", output), output[-4000:]
    assert "sending SIGKILL" not in output, output[-4000:]
    assert len(started) >= 4
    wait_for(
        lambda: not Honcho.alive(started),
        timeout=10,
        message=f"every process honcho started to exit: {Honcho.alive(started)}",
    )
