"""Errors as JSON a person can act on: {"error": "...", "errors": [...]}, never HTML."""

from django.http import JsonResponse
from rest_framework.exceptions import APIException
from rest_framework.views import exception_handler as drf_exception_handler


def _messages(detail) -> list[str]:
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item)]
    if isinstance(detail, dict):
        return [
            f"{key}: {m}" if key not in ("detail", "non_field_errors") else m
            for key, value in detail.items()
            for m in _messages(value)
        ]
    return [str(detail)]


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        messages = _messages(exc.detail)
        response.data = {
            "error": "; ".join(messages),
            "errors": messages,
            **getattr(exc, "fields", {}),
        }
    return response


def not_found(request, exception=None):
    return JsonResponse({"error": f"no such path: {request.path}"}, status=404)


def server_error(request):
    return JsonResponse({"error": "internal error; the server log has the details"}, status=500)
