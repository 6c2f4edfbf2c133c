"""What a new user meets first: the pages' static files, where / leads, the settings a
deployment must give (SECRET_KEY) and Django's deployment checklist."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from wsgiref.util import setup_testing_defaults

import pytest

from flowforge.wsgi import application
from testkit.engine import ROOT


def wsgi_get(path: str) -> tuple[int, dict, bytes]:
    """GET `path` from the WSGI application itself, as gunicorn or runserver would."""
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    chunks = application(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], body


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/admin/login/", "/api/v1/docs/"])
def test_every_static_file_a_page_names_is_served_by_the_web_process(page):
    status, _, body = wsgi_get(page)
    assert status == 200
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', body.decode())
    assert any(a.endswith(".css") for a in assets) and any(a.endswith(".js") for a in assets)
    for asset in assets:
        status, headers, content = wsgi_get(asset)
        assert (status, bool(content)) == (200, True), asset
        expected = {"css": "text/css", "js": "text/javascript"}.get(asset.rsplit(".", 1)[-1])
        if expected:
            assert headers["Content-Type"].startswith(expected), (asset, headers)


@pytest.mark.django_db
def test_the_root_is_the_dashboard_behind_a_login(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/")
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content


@pytest.mark.django_db
def test_browsers_asking_for_a_favicon_get_one():
    status, headers, _ = wsgi_get("/favicon.ico")
    assert status == 302
    status, headers, icon = wsgi_get(headers["Location"])
    assert (status, headers["Content-Type"]) == (200, "image/svg+xml") and b"<svg" in icon


PRODUCTION = {"DATABASE_URL": "postgres://flowforge@db.invalid:5432/flowforge", "DEBUG": "false"}


def start(argv: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """A FlowForge process started afresh with exactly these settings variables."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        argv, cwd=ROOT, env={**keep, **env}, capture_output=True, text=True, timeout=timeout
    )


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return start([sys.executable, "manage.py", *args], env)


PROCESSES = {
    "migrate": [sys.executable, "manage.py", "migrate"],
    "web": [sys.executable, "-m", "gunicorn", "flowforge.wsgi", "-b", "127.0.0.1:0"],
    "worker": [sys.executable, "-m", "celery", "-A", "flowforge", "worker"],
    "beat": [sys.executable, "-m", "celery", "-A", "flowforge", "beat"],
}


@pytest.mark.parametrize("process", PROCESSES)
def test_a_deployment_without_secret_key_refuses_to_start(process):
    done = start(PROCESSES[process], PRODUCTION, timeout=60)
    assert done.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in done.stdout + done.stderr


def print_secret_key(var_dir) -> str:
    script = (
        "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'flowforge.settings');"
        "from django.conf import settings; print(settings.SECRET_KEY)"
    )
    done = start([sys.executable, "-c", script], {"FLOWFORGE_VAR_DIR": str(var_dir)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_embedded_default_makes_its_key_once_and_keeps_it_private(tmp_path):
    first, second = print_secret_key(tmp_path / "var"), print_secret_key(tmp_path / "var")
    key_file = tmp_path / "var" / "secret_key"
    assert first == second == key_file.read_text().strip() and len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert print_secret_key(tmp_path / "other") != first  # never a key installs share


def test_deploy_checklist_is_clean_but_for_https_behind_a_proxy():
    env = {**PRODUCTION, "SECRET_KEY": "k" * 20 + "-unguessable-" + "x" * 30}
    plain = manage("check", "--deploy", "--fail-level", "ERROR", env=env)
    assert plain.returncode == 0, plain.stderr
    warnings = set(re.findall(r"\((security\.W\d+)\)", plain.stderr + plain.stdout))
    # HSTS, SSL redirect, secure session and CSRF cookies: the TLS proxy's (FLOWFORGE_HTTPS).
    assert warnings <= {"security.W004", "security.W008", "security.W012", "security.W016"}
    behind_tls = manage("check", "--deploy", env={**env, "FLOWFORGE_HTTPS": "true"})
    assert "System check identified no issues" in behind_tls.stdout, behind_tls.stderr
