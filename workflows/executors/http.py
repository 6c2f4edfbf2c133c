"""HTTP tasks: send one request with `requests` and check the status code."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, ReadTimeoutError

from dags.dag_spec import TaskSpec

from . import TAIL_CHARS, AttemptContext, ExecutionResult, format_seconds

# The body is read into memory to parse it, so it is capped; past the cap only text is kept.
MAX_BODY_BYTES = 8 * 1024 * 1024
READ_CHUNK = 64 * 1024


class _Stopped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def run(ctx: AttemptContext) -> ExecutionResult:
    task = ctx.task
    url = task.url or ""
    if not url:
        return ExecutionResult(succeeded=False, error="http task has no 'url'")
    timeout_secs = task.timeout_secs or None
    try:
        response = _send(task, url, timeout_secs)
        with response:
            body, truncated = _read_body(response, timeout_secs, ctx)
    except _Stopped as stop:
        return _stopped_result(stop.reason, timeout_secs)
    except requests.exceptions.Timeout:
        return _stopped_result("timeout", timeout_secs)
    except requests.exceptions.RequestException as exc:
        if _is_read_timeout(exc):
            return _stopped_result("timeout", timeout_secs)
        return ExecutionResult(succeeded=False, error=describe_request_error(exc, url))
    return _response_result(response, body, truncated, task, url)


def _send(task: TaskSpec, url: str, timeout_secs: float | None) -> requests.Response:
    return requests.request(
        task.method.upper(),
        url,
        headers=task.headers,
        data=task.body,
        json=task.json if task.body is None else None,
        timeout=timeout_secs,
        stream=True,
    )


def _read_body(
    response: requests.Response, timeout_secs: float | None, ctx: AttemptContext
) -> tuple[bytes, bool]:
    """Reads up to MAX_BODY_BYTES, honouring the attempt's total timeout and cancellation."""
    deadline = time.monotonic() + timeout_secs if timeout_secs else None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(READ_CHUNK):
        if deadline is not None and time.monotonic() > deadline:
            raise _Stopped("timeout")
        if ctx.should_cancel is not None and ctx.should_cancel():
            raise _Stopped("cancel")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks)[:MAX_BODY_BYTES], True
    return b"".join(chunks), False


def _response_result(
    response: requests.Response, body: bytes, truncated: bool, task: TaskSpec, url: str
) -> ExecutionResult:
    text = body.decode(response.encoding or "utf-8", errors="replace")
    output = {
        "status_code": response.status_code,
        "body": _output_body(response, body, text, truncated),
    }
    result = ExecutionResult(succeeded=True, stdout=text[-TAIL_CHARS:], output=output)
    expected = task.expect_status
    if not _status_expected(response.status_code, expected):
        result.succeeded = False
        wanted = ", ".join(str(code) for code in expected) if expected else "2xx"
        where = url if response.url == url else f"{response.url} (redirected from {url})"
        result.error = f"HTTP {response.status_code} from {where} (expected {wanted})"
    return result


def _output_body(response: requests.Response, body: bytes, text: str, truncated: bool) -> Any:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if is_json and not truncated:
        try:
            return json.loads(body)
        except ValueError:
            pass
    return text[:TAIL_CHARS]


def _status_expected(status_code: int, expected: Sequence[int] | None) -> bool:
    if expected:
        return status_code in expected
    return 200 <= status_code < 300


def _stopped_result(reason: str, timeout_secs: float | None) -> ExecutionResult:
    if reason == "cancel":
        return ExecutionResult(succeeded=False, cancelled=True, error="cancelled")
    seconds = format_seconds(timeout_secs) if timeout_secs else "?"
    return ExecutionResult(succeeded=False, timed_out=True, error=f"timed out after {seconds} s")


def _is_read_timeout(exc: requests.exceptions.RequestException) -> bool:
    # A read timeout while streaming the body surfaces as a ConnectionError wrapping it.
    # (Not urllib3's TimeoutError base: its NewConnectionError, i.e. "refused", is one too.)
    return any(isinstance(cause, (ReadTimeoutError, TimeoutError)) for cause in _causes(exc))


def describe_request_error(exc: requests.exceptions.RequestException, url: str) -> str:
    """One actionable line for a request that got no response."""
    causes = list(_causes(exc))
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return f"connection refused: {url}"
    if any(isinstance(cause, (NameResolutionError, socket.gaierror)) for cause in causes):
        return f"could not resolve host: {url}"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return f"invalid URL {url!r}: {exc}"
    if isinstance(exc, requests.exceptions.InvalidSchema):
        return f"unsupported URL scheme: {url}"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error talking to {url}: {_reason(exc)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection failed: {url}: {_reason(exc)}"
    return f"request to {url} failed: {type(exc).__name__}: {exc}"


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and everything it wraps: args, urllib3's `.reason`, __cause__ and __context__."""
    seen: list[BaseException] = []
    pending: list[Any] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is s for s in seen):
            continue
        seen.append(current)
        pending.extend(current.args)
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
    return seen


def _reason(exc: BaseException) -> str:
    # requests wraps urllib3's MaxRetryError, whose `.reason` is the error worth showing.
    wrapped = exc.args[0] if exc.args else None
    message = str(getattr(wrapped, "reason", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
