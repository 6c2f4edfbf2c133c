"""/health: is the database there, is the broker there. No authentication."""

from django.db import connection
from django.http import JsonResponse

from runs.messages import check_broker


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is what this reports
        return f"error: {exc}".strip()


def _broker() -> str:
    try:
        check_broker()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc}".strip()


def health(request):
    report = {"database": _database(), "broker": _broker()}
    healthy = all(value == "ok" for value in report.values())
    down = [part for part, value in report.items() if value != "ok"]
    body = {"status": "ok" if healthy else f"unavailable: {', '.join(down)} down", **report}
    return JsonResponse(body, status=200 if healthy else 503)
