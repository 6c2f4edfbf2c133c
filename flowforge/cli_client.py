"""What every `flowforge` command shares: the API client that turns failures into one-line
errors, and showing an answer (a table, or the raw JSON with --json)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from .cli_format import render_run

DEFAULT_API_URL = "http://localhost:8000"
FINAL_STATES = frozenset({"success", "failed", "cancelled"})
TIMEOUT = (5, 60)  # seconds to connect, seconds to wait for an answer


class CliError(Exception):
    """An expected failure: its message is the one line printed on stderr."""


class ApiError(CliError):
    """The API answered with an error status; `errors` holds each of its messages."""

    def __init__(self, message: str, status: int, errors: list[str]) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors


class ApiClient:
    """A thin `requests` session that turns every failure into a CliError."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str, **params: object) -> dict:
        query = {key: value for key, value in params.items() if value is not None}
        return self.request("GET", path, params=query)

    def post(self, path: str, **kwargs: Any) -> dict:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> dict:
        return self.request("DELETE", path, **kwargs)  # a 204 has no content: {}

    def request(self, method: str, path: str, **kwargs: Any) -> dict:
        """`kwargs` are requests' own (json, data, headers, params)."""
        try:
            response = self.session.request(method, self.base_url + path, timeout=TIMEOUT, **kwargs)
        except (requests.ConnectionError, requests.Timeout):
            raise CliError(f"cannot reach the API at {self.base_url}") from None
        except requests.RequestException as exc:  # a malformed --api-url, mostly
            raise CliError(
                f"bad API URL {self.base_url!r} ({type(exc).__name__}); "
                f"give one like {DEFAULT_API_URL}"
            ) from None
        if response.status_code >= 400:
            raise self._error(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"the server at {self.base_url} did not answer with JSON; is it FlowForge?"
            ) from None

    def _error(self, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        errors = body.get("errors") or [body.get("error") or response.reason or "no details"]
        message = body.get("error") or "; ".join(errors)
        if response.status_code == 401 and not self.token:
            message += " (give --token or set FLOWFORGE_TOKEN)"
        if retry_after := response.headers.get("Retry-After"):
            message += f" (retry after {retry_after} s)"
        reason = (response.reason or "error").lower()
        line = " ".join(f"{response.status_code} {reason}: {message}".split())  # one line
        return ApiError(line, response.status_code, errors)


def segment(value: str) -> str:
    """An id as one URL path segment, so that a '/' or '?' in it cannot change the path."""
    return quote(str(value), safe="")


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))  # the API's own key order


def show(args: argparse.Namespace, data: dict, render: Callable[[], str]) -> int:
    """The raw answer with --json, else the rendered text."""
    if args.json:
        print_json(data)
    else:
        print(render())
    return 0


def show_page(
    args: argparse.Namespace, page: dict, render: Callable[[list[dict]], str], empty: str
) -> int:
    """One page of a list: a table, a note when there are more, `empty` when there is none."""
    if args.json:
        print_json(page)
        return 0
    results = page.get("results") or []
    print(render(results) if results else empty)
    if page.get("count", 0) > len(results):
        print(f"(showing {len(results)} of {page['count']}; --limit N shows more)")
    return 0


def wait_for_run(client: ApiClient, run: dict, args: argparse.Namespace) -> dict:
    """Poll the run until it is final, printing each state it passes through."""
    path = f"/api/v1/runs/{segment(run['run_id'])}"
    deadline = time.monotonic() + args.timeout if args.timeout else None
    state = run["state"]
    while run["state"] not in FINAL_STATES:
        if deadline and time.monotonic() > deadline:
            raise CliError(f"run {run['run_id']} still {run['state']} after {args.timeout} s")
        time.sleep(args.interval)
        run = client.get(path)
        if run["state"] != state and not args.json:
            state = run["state"]
            print(f"run {run['run_id']}: {state}", flush=True)
    return run


def show_then_wait(client: ApiClient, args: argparse.Namespace, run: dict, message: str) -> int:
    """Print `message` (the run as JSON with --json); with --wait, follow the run to its
    end and show it, failing unless it ends in success."""
    if not args.wait:
        return show(args, run, lambda: message)
    if not args.json:
        print(message, flush=True)
    try:
        run = wait_for_run(client, run, args)
    except KeyboardInterrupt:  # stop watching; the run itself goes on on the server
        raise CliError(f"stopped waiting; run {run['run_id']} goes on") from None
    show(args, run, lambda: "\n" + render_run(run))
    if run["state"] != "success":
        raise CliError(f"run {run['run_id']} {run['state']}")
    return 0
