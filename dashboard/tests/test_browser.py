"""The dashboard in a real browser: headless Debian Chromium driven by Playwright, against
gunicorn and a real worker on this session's database and broker (CONTRACT section 10).

Every page visited is saved under var/screenshots/ (CI keeps them; the README names them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token

from dags.models import Dag
from runs.models import DagRun, DeadLetter, TaskInstance
from runs.roles import ensure_roles
from runs.services import cancel_run
from testkit.engine import ROOT, wait_for, wait_for_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "a-long-test-password"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run does)"
    ),
]

GREETER = """
id: greeter
name: Greeter
params: {greeting: hello}
tasks:
  - {id: greet, command: "echo \\"$FLOWFORGE_PARAMS\\"; sleep 2"}
  - {id: after, command: "echo after", depends_on: [greet]}
"""
TALKER = """
id: talker
tasks:
  - {id: talk, command: "echo first line; sleep 30"}
"""
DOOMED = """
id: doomed
tasks:
  - {id: fails, command: "echo broken >&2; exit 3"}
"""


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make between its calls are safe here (one thread, no concurrent use).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def user(role: str) -> str:
    """A staff user with the role's group and a password: its username."""
    ensure_roles()  # transactional tests flush the groups the migration made
    account = get_user_model().objects.create_user(
        username=f"{role}-in-browser", password=PASSWORD, is_staff=True
    )
    account.groups.add(Group.objects.get(name=role))
    return account.username


def logged_in(browser, base_url: str, username: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{base_url}/dags/greeter/")
    assert page.url.startswith(f"{base_url}/login/")  # anonymous: sent to the login form
    shot(page, "login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/dags/greeter/")
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def submit(base_url: str, username: str, yaml_text: str) -> None:
    """Submit a DAG through the API, as a user's script would."""
    token = Token.objects.create(user=get_user_model().objects.get(username=username)).key
    answer = requests.post(
        f"{base_url}/api/v1/dags",
        data=yaml_text.encode(),
        headers={"Content-Type": "application/yaml", "Authorization": f"Token {token}"},
        timeout=30,
    )
    assert answer.status_code in (200, 201), answer.text
    Token.objects.filter(key=token).delete()


def stays(page) -> None:
    """Mark the page, to show later that it was never left (no navigation, no reload)."""
    page.evaluate("window.__stayed = true")


def stayed(page) -> bool:
    return page.evaluate("window.__stayed === true")


def test_trigger_watch_repair_and_retry_as_an_admin_then_look_as_a_viewer(browser, web_server):
    admin = user("admin")
    submit(web_server, admin, GREETER)
    page = logged_in(browser, web_server, admin)

    # The DAG page: its graph, then a run triggered from the form with a param.
    assert page.locator("svg.dag-graph [data-task-id]").count() == 2
    shot(page, "dag")
    page.fill("input[name='param:greeting']", "bonjour")
    page.click("form.trigger button[type=submit]")
    page.wait_for_url(f"{web_server}/runs/**")
    run = DagRun.objects.get(dag__dag_id="greeter")
    assert run.params == {"greeting": "bonjour"}

    # The run page turns green by itself.
    stays(page)
    page.wait_for_selector("#run-state[data-run-state=success]", timeout=30_000)
    graph = page.locator("svg.dag-graph [data-task-id]")
    assert graph.evaluate_all("nodes => nodes.map(n => n.dataset.state)") == ["success"] * 2
    assert stayed(page), "the run page navigated or reloaded while the run ran"
    shot(page, "run")

    # Clear `after` alone, then mark it failed: each from its row's buttons.
    page.uncheck("#task-after input[name=downstream]")
    page.click("#task-after form[action$='/clear'] button")
    page.wait_for_selector("#run-state[data-run-state=success]", timeout=30_000)
    wait_for(
        lambda: TaskInstance.objects.filter(run=run, task_id="after", try_number=2).exists(),
        message="after to run again",
    )
    assert TaskInstance.objects.get(run=run, task_id="greet").try_number == 1
    page.reload()
    page.click("#task-after button[value=failed]")
    page.wait_for_selector("#run-state[data-run-state=failed]", timeout=10_000)
    assert wait_for_run(run.id).state == "failed"
    assert [r.action for r in run.repairs.all()] == ["clear", "mark"]

    # A task's live tail, while it runs.
    submit(web_server, admin, TALKER)
    page.goto(f"{web_server}/dags/talker/")
    page.click("form.trigger button[type=submit]")
    page.wait_for_url(f"{web_server}/runs/**")
    talking = DagRun.objects.get(dag__dag_id="talker")
    wait_for(
        lambda: TaskInstance.objects.filter(run=talking, state="running").exists(),
        message="talk to run",
    )
    page.goto(f"{web_server}/runs/{talking.id}/tasks/talk/")
    stays(page)
    page.wait_for_function(
        "document.querySelector('#live-tail')?.textContent.includes('first line')",
        timeout=15_000,
    )
    assert stayed(page)
    shot(page, "task")
    cancel_run(talking)

    # A dead letter, retried from its page.
    submit(web_server, admin, DOOMED)
    page.goto(f"{web_server}/dags/doomed/")
    page.click("form.trigger button[type=submit]")
    page.wait_for_url(f"{web_server}/runs/**")
    wait_for_run(DagRun.objects.get(dag__dag_id="doomed").id)
    page.goto(f"{web_server}/dlq/")
    shot(page, "dlq")
    page.click("form[action*='/retry'] button")
    page.wait_for_url(f"{web_server}/dlq/**")
    entry = wait_for(lambda: DeadLetter.objects.filter(retried_by=admin).first(), message="retry")
    assert entry.task_id == "fails"

    for name, path in (
        ("dag", "/dags/greeter/"),  # again, now with its grid of runs
        ("dags", "/"),
        ("runs", "/runs/"),
        ("workers", "/workers/"),
        ("status", "/status/"),
    ):
        page.goto(web_server + path)
        assert page.locator("h1").count() >= 1, name
        shot(page, name)

    # A viewer sees the same pages without a single button that changes anything.
    viewer = logged_in(browser, web_server, user("viewer"))
    for path in ("/dags/greeter/", f"/runs/{run.id}/", "/dlq/", "/"):
        viewer.goto(web_server + path)
        buttons = viewer.locator("main form[method=post] button")
        assert buttons.count() == 0, (path, buttons.all_inner_texts())
    shot(viewer, "run-as-viewer")
    print(json.dumps(sorted(p.name for p in SCREENSHOTS.glob("*.png"))))


NIGHTLY = """
id: nightly
schedule: "0 3 * * *"
catchup: false
tasks:
  - {id: extract, command: "true", queue: nobody-listens}
  - {id: load, command: "true", depends_on: [extract], queue: nobody-listens}
"""


def test_pause_backfill_cancel_and_rerun_buttons(browser, web_server):
    operator = user("admin")
    submit(web_server, operator, NIGHTLY)
    page = logged_in(browser, web_server, operator)
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this run?"

    page.goto(f"{web_server}/")
    page.click("form[action='/dags/nightly/pause'] button[data-action=pause]")
    page.wait_for_selector("form[action='/dags/nightly/pause'] button[data-action=unpause]")
    assert Dag.objects.get(dag_id="nightly").is_paused
    page.click("form[action='/dags/nightly/pause'] button[data-action=unpause]")
    page.wait_for_selector("form[action='/dags/nightly/pause'] button[data-action=pause]")

    page.goto(f"{web_server}/dags/nightly/")
    page.fill("form.backfill input[name=start]", "2026-11-01T00:00")
    page.fill("form.backfill input[name=end]", "2026-11-03T00:00")
    page.click("form.backfill button[type=submit]")
    page.wait_for_selector(".messages li")
    backfilled = DagRun.objects.filter(dag__dag_id="nightly", triggered_by="backfill")
    assert backfilled.count() == 2
    cells = page.locator("[data-run-id][data-task-id][data-state]")
    assert cells.count() == 4  # 2 runs × 2 tasks, each cell with its ids and state

    run = backfilled.order_by("logical_date").first()
    page.goto(f"{web_server}/runs/{run.id}/")
    page.click("form[action$='/cancel'] button")
    page.wait_for_selector("#run-state[data-run-state=cancelled]")
    page.click("form[action$='/rerun'] button")
    page.wait_for_selector("#run-state[data-run-state=running]")
    assert [r.action for r in DagRun.objects.get(id=run.id).repairs.all()] == ["rerun"]
