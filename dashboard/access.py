"""Who may see a dashboard page and press its buttons: the API's roles (runs/roles.py).

Pages need a login (anonymous: 302 to /login/) and the view permission of what they
show; a button's POST needs the permission the matching API endpoint needs, and the
template shows the button only to those who have it (`perms` in every template).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_POST

VIEW_RUNS = "runs.view_dagrun"
TRIGGER = "runs.trigger_dagrun"
CANCEL = "runs.cancel_dagrun"
REPAIR = "runs.retry_taskinstance"
PAUSE = "dags.pause_dag"
VIEW_DEAD_LETTERS = "runs.view_deadletter"
VIEW_WORKERS = "runs.view_workerheartbeat"

View = Callable[..., HttpResponse]


def page(permission: str = VIEW_RUNS) -> Callable[[View], View]:
    """A page: login required, then `permission` (403 naming it otherwise). Pages are
    gzipped for browsers that accept it: a 1,000-task grid is megabytes of repetitive
    HTML (Django's gzip pads against BREACH, and CSRF tokens are masked per response)."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        @gzip_page
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            _require(request, permission)
            return view(request, *args, **kwargs)

        return guarded

    return decorate


def action(permission: str) -> Callable[[View], View]:
    """A button's POST (CSRF-checked by the middleware): login and `permission`."""

    def decorate(view: View) -> View:
        return page(permission)(require_POST(view))

    return decorate


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"this needs the permission {permission}")
