"""/health, /metrics, /api/v1/status, /api/v1/workers, the schema, throttling."""

import pytest
from django.utils import timezone

from runs.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_health_is_public_and_checks_both_parts(anonymous):
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert anonymous.get("/health/").status_code == 200


def test_health_names_the_broker_when_it_is_down(anonymous, monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment first; nothing listens on port 1.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    response = anonymous.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["broker"].startswith("error")
    assert "broker" in body["status"]


def test_metrics_are_prometheus_text(anonymous):
    response = anonymous.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'flowforge_runs{state="running"}' in text
    assert "flowforge_workers_alive" in text


def test_schema_is_public_openapi_3(anonymous):
    response = anonymous.get("/api/v1/schema?format=json")
    assert response.status_code == 200
    assert b"openapi: 3" in response.content or b'"openapi"' in response.content
    assert anonymous.get("/api/v1/docs/").status_code == 200


def test_status_counts_and_workers(viewer):
    # The session's own worker, when a test before this one started it, is counted too.
    alive_before = viewer.get("/api/v1/status").json()["workers_alive"]
    known_before = viewer.get("/api/v1/workers?all=1").json()["count"]
    WorkerHeartbeat.objects.create(
        hostname="w@a", queues=["default"], running=[7], last_heartbeat=timezone.now()
    )
    WorkerHeartbeat.objects.create(
        hostname="w@gone",
        queues=["default"],
        last_heartbeat=timezone.now() - timezone.timedelta(hours=1),
    )
    status = viewer.get("/api/v1/status").json()
    assert status["workers_alive"] == alive_before + 1
    assert set(status["runs"]) == {"queued", "running", "success", "failed", "cancelled"}
    assert status["queues"]["default"] is not None
    workers = viewer.get("/api/v1/workers").json()
    mine = [
        (w["hostname"], w["running_tasks"]) for w in workers["results"] if w["hostname"][:2] == "w@"
    ]
    assert mine == [("w@a", [7])]
    assert viewer.get("/api/v1/workers?all=1").json()["count"] == known_before + 2


def test_rate_limit_answers_429_with_retry_after(viewer, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "3/min"})
    cache.clear()
    codes = [viewer.get("/api/v1/dags").status_code for _ in range(3)]
    limited = viewer.get("/api/v1/dags")
    cache.clear()
    assert codes == [200, 200, 200] and limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
