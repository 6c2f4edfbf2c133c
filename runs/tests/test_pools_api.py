"""Pools: created and resized through dags/pools.py by the API, `manage.py pool` and the
admin; `running` stays the engine's; the roles that may see and change them."""

import importlib
from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from dags.models import Pool
from dags.pools import PoolError, create_or_update_pool
from dags.tests.test_admin import staff_viewer  # noqa: F401
from runs.roles import ensure_roles

pytestmark = pytest.mark.django_db

POOLS = "/api/v1/pools"
POOL_PERMISSIONS = ("view_pool", "add_pool", "change_pool")


def post(client, body, **kwargs):
    return client.post(POOLS, body, format="json", **kwargs)


def simulate_running(name: str, running: int) -> None:
    """What the engine's claims would leave: `running` tasks of the pool running."""
    Pool.objects.filter(name=name).update(running=running)


# --- the API


def test_create_then_update_then_list_and_detail(admin):
    created = post(admin, {"name": "db", "slots": 2, "description": "the warehouse"})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert {k: body[k] for k in ("name", "slots", "running", "description", "outcome")} == {
        "name": "db",
        "slots": 2,
        "running": 0,
        "description": "the warehouse",
        "outcome": "created",
    }
    simulate_running("db", 1)

    updated = admin.post(POOLS + "/", {"name": "db", "slots": 5}, format="json")
    assert updated.status_code == 200, updated.json()
    assert updated.json()["outcome"] == "updated"
    assert (updated.json()["slots"], updated.json()["running"]) == (5, 1)
    assert updated.json()["description"] == "the warehouse"  # left out: kept
    cleared = post(admin, {"name": "db", "slots": 5, "description": ""})
    assert cleared.status_code == 200 and cleared.json()["description"] == ""

    post(admin, {"name": "api.calls", "slots": 0})
    page = admin.get(POOLS).json()
    assert page["count"] == 2
    assert [(p["name"], p["slots"], p["running"]) for p in page["results"]] == [
        ("api.calls", 0, 0),
        ("db", 5, 1),
    ]
    assert admin.get(POOLS + "/db/").json()["slots"] == 5
    assert admin.get(POOLS + "?page_size=1").json()["next"] is not None


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"slots": 2}, "name: This field is required"),
        ({"name": "db"}, "slots: This field is required"),
        ({"name": "", "slots": 2}, "name: This field may not be blank"),
        ({"name": 5, "slots": 2}, "name: Not a valid string"),
        ({"name": "Bad Name", "slots": 2}, "pool name 'Bad Name' must match"),
        ({"name": "x" * 101, "slots": 2}, "must match"),
        ({"name": "db", "slots": -1}, "slots must be a whole number from 0 to 1,000,000, got -1"),
        ({"name": "db", "slots": 1_000_001}, "from 0 to 1,000,000"),
        ({"name": "db", "slots": "5"}, "slots: A valid integer is required"),
        ({"name": "db", "slots": 5.0}, "slots: A valid integer is required"),
        ({"name": "db", "slots": True}, "slots: A valid integer is required"),
        ({"name": "db", "slots": None}, "slots: This field may not be null"),
        ({"name": "db", "slots": 2, "description": 7}, "description: Not a valid string"),
        ([{"name": "db", "slots": 2}], "Invalid data"),
    ],
)
def test_bad_input_is_a_400_that_says_why_and_creates_nothing(admin, body, fragment):
    response = post(admin, body)
    assert response.status_code == 400, response.json()
    assert fragment in response.json()["error"], response.json()
    assert not Pool.objects.exists()


def test_unstorable_text_is_a_400_naming_the_field(admin):
    raw = b'{"name": "db", "slots": 2, "description": "a\\u0000b"}'
    response = admin.generic("POST", POOLS, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("description: contains a NUL character")
    assert not Pool.objects.exists()


def test_slots_cannot_go_below_the_tasks_running(admin):
    post(admin, {"name": "db", "slots": 4, "description": "kept"})
    simulate_running("db", 3)
    refused = post(admin, {"name": "db", "slots": 2, "description": "changed"})
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "pool 'db' has 3 tasks running; its slots cannot go below that (asked for 2): "
        "give at least 3, or lower them once those tasks have finished"
    )
    pool = Pool.objects.get()
    assert (pool.slots, pool.running, pool.description) == (4, 3, "kept")  # nothing changed
    assert post(admin, {"name": "db", "slots": 3}).status_code == 200  # down to exactly 3
    assert Pool.objects.get().running == 3  # an update never touches `running`


def test_the_service_refuses_the_same_and_never_writes_running():
    pool, created = create_or_update_pool("db", 2)
    assert created and (pool.slots, pool.running, pool.description) == (2, 0, "")
    simulate_running("db", 1)
    with pytest.raises(PoolError, match="has 1 task running") as refused:
        create_or_update_pool("db", 0)
    assert refused.value.field == "slots"
    with pytest.raises(PoolError, match="must match") as bad_name:
        create_or_update_pool("DB", 2)
    assert bad_name.value.field == "name"
    pool, created = create_or_update_pool("db", 7, "more")
    assert not created and (pool.slots, pool.running, pool.description) == (7, 1, "more")


def test_unknown_pool_is_a_404(admin):
    assert admin.get(POOLS + "/nope").json()["error"] == (
        "no pool named 'nope'; see GET /api/v1/pools"
    )
    assert admin.get(POOLS + "/a%00b").status_code == 404  # not even looked up


def test_a_viewer_sees_pools_and_cannot_create_or_change_them(admin, viewer, operator, anonymous):
    post(admin, {"name": "db", "slots": 2})
    assert viewer.get(POOLS).json()["count"] == 1
    assert viewer.get(POOLS + "/db").status_code == 200

    denied = post(viewer, {"name": "new", "slots": 2})
    assert denied.status_code == 403
    assert "(dags.add_pool)" in denied.json()["error"]
    assert denied.json()["error"].endswith("ask an admin for the admin role")
    changing = post(operator, {"name": "db", "slots": 9})
    assert changing.status_code == 403 and "(dags.change_pool)" in changing.json()["error"]
    assert anonymous.get(POOLS).status_code == 401
    assert list(Pool.objects.values_list("name", "slots")) == [("db", 2)]


def test_the_schema_documents_the_pool_endpoints(anonymous):
    paths = anonymous.get("/api/v1/schema?format=json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/pools/"])
    assert "get" in paths["/api/v1/pools/{name}/"]


# --- roles and their migrations


def historical_apps(migration: str):
    return MigrationExecutor(connection).loader.project_state(("runs", migration)).apps


def test_a_fresh_database_grants_the_pool_permissions_once_pools_exist():
    """As on a fresh database: 0003 runs before dags.Pool exists and skips its
    permissions; 0008 creates them and grants them."""
    Permission.objects.filter(codename__in=POOL_PERMISSIONS).delete()
    Group.objects.all().delete()
    roles = importlib.import_module("runs.migrations.0003_roles")
    roles.create_roles(historical_apps("0003_roles"), None)
    viewer = Group.objects.get(name="viewer")
    assert not viewer.permissions.filter(codename="view_pool").exists()
    assert viewer.permissions.filter(codename="view_dag").exists()

    later = importlib.import_module("runs.migrations.0008_pool_roles")
    later.grant_pool_permissions(historical_apps("0008_pool_roles"), None)
    granted = {
        name: set(
            Group.objects.get(name=name)
            .permissions.filter(codename__in=POOL_PERMISSIONS)
            .values_list("codename", flat=True)
        )
        for name in ("viewer", "operator", "admin")
    }
    assert granted == {
        "viewer": {"view_pool"},
        "operator": {"view_pool"},
        "admin": set(POOL_PERMISSIONS),
    }


def test_ensure_roles_skips_a_missing_permission_only_when_told():
    Permission.objects.filter(codename="view_pool").delete()
    with pytest.raises(Permission.DoesNotExist, match="dags.view_pool"):
        ensure_roles()
    ensure_roles(missing_ok=True)
    assert Group.objects.get(name="viewer").permissions.filter(codename="view_dag").exists()


# --- manage.py pool


def test_pool_command_creates_updates_and_lists():
    out = StringIO()
    call_command("pool", "db", "--slots", "2", "--description", "the warehouse", stdout=out)
    call_command("pool", "db", "--slots", "4", stdout=out)
    assert out.getvalue().splitlines() == [
        "pool db created: 2 slots, 0 running",
        "pool db updated: 4 slots, 0 running",
    ]
    assert Pool.objects.get().description == "the warehouse"

    listed = StringIO()
    call_command("pool", "--list", stdout=listed)
    assert [line.split() for line in listed.getvalue().splitlines()] == [
        ["NAME", "SLOTS", "RUNNING", "DESCRIPTION"],
        ["db", "4", "0", "the", "warehouse"],
    ]


def test_pool_command_refuses_with_reasons():
    empty = StringIO()
    call_command("pool", "--list", stdout=empty)
    assert empty.getvalue().startswith("no pools")
    with pytest.raises(CommandError, match="give NAME and --slots N"):
        call_command("pool", "db")
    with pytest.raises(CommandError, match="must match"):
        call_command("pool", "Not_Lower", "--slots", "1")
    call_command("pool", "db", "--slots", "2", stdout=StringIO())
    simulate_running("db", 2)
    with pytest.raises(CommandError, match="pool 'db' has 2 tasks running"):
        call_command("pool", "db", "--slots", "1")


# --- the admin

ADD = reverse("admin:dags_pool_add")


def change_url(pool: Pool) -> str:
    return reverse("admin:dags_pool_change", args=[pool.pk])


def form_errors(page) -> dict:
    form = page.context["adminform"].form
    return {field: list(errors) for field, errors in form.errors.items()}


def test_admin_adds_and_changes_through_the_service(admin_client):
    added = admin_client.post(ADD, {"name": "db", "slots": "2", "description": "warehouse"})
    assert added.status_code == 302
    pool = Pool.objects.get()
    assert (pool.name, pool.slots, pool.description) == ("db", 2, "warehouse")

    simulate_running("db", 1)
    page = admin_client.get(change_url(pool))
    html = page.content.decode()
    assert 'name="slots"' in html and 'value="2"' in html
    assert 'name="running"' not in html and 'name="name"' not in html  # read-only
    changed = admin_client.post(change_url(pool), {"slots": "3", "description": "warehouse"})
    assert changed.status_code == 302
    pool.refresh_from_db()
    assert (pool.slots, pool.running) == (3, 1)
    assert b'class="deletelink"' not in admin_client.get(change_url(pool)).content


def test_admin_bad_input_is_a_form_error(admin_client):
    bad = admin_client.post(ADD, {"name": "Bad Name", "slots": "2"})
    assert bad.status_code == 200
    assert "must match" in form_errors(bad)["name"][0]
    too_many = admin_client.post(ADD, {"name": "db", "slots": "2000000"})
    assert "from 0 to 1,000,000" in form_errors(too_many)["slots"][0]
    assert not Pool.objects.exists()

    create_or_update_pool("db", 4, "first")
    again = admin_client.post(ADD, {"name": "db", "slots": "9"})
    assert "a pool named 'db' exists" in form_errors(again)["name"][0]
    simulate_running("db", 3)
    pool = Pool.objects.get()
    lower = admin_client.post(change_url(pool), {"slots": "1", "description": "second"})
    assert "has 3 tasks running" in form_errors(lower)["slots"][0]
    pool.refresh_from_db()
    assert (pool.slots, pool.running, pool.description) == (4, 3, "first")  # untouched


def test_admin_viewer_sees_pools_read_only(staff_viewer):  # noqa: F811
    pool, _ = create_or_update_pool("db", 2)
    assert staff_viewer.get(reverse("admin:dags_pool_changelist")).status_code == 200
    page = staff_viewer.get(change_url(pool))
    assert page.status_code == 200 and b'name="slots"' not in page.content
    assert staff_viewer.get(ADD).status_code == 403
    assert staff_viewer.post(change_url(pool), {"slots": "9"}).status_code == 403
    assert Pool.objects.get().slots == 2
