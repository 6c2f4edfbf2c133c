"""Property-based API test: every operation of /api/v1/schema, fed generated input by
schemathesis, never answers 500 and never breaks its own documented response schema.

Besides what schemathesis generates, bodies are made hostile (dags/boundary.py): a NUL
or a lone surrogate in every string, params nested past the depth limit. (Bodies past
the size limit and nesting thousands of levels deep, which schemathesis cannot
generate: test_hostile_input.py, for each operation.)"""

import os

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from flowforge.wsgi import application
from runs.services import trigger_run
from testkit.engine import submit

schema = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application)


def with_every_string(value, change):
    """`value` with `change` applied to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {
            with_every_string(k, change): with_every_string(v, change) for k, v in value.items()
        }
    if isinstance(value, list):
        return [with_every_string(item, change) for item in value]
    return value


def nested(depth: int) -> dict:
    """A body whose params nest `depth` lists deep."""
    deep: list = []
    for _ in range(depth):
        deep = [deep]
    return {"dag_id": "seeded", "params": {"deep": deep}}


@schema.hook
def flatmap_body(context, body):
    hostile = [
        body,
        with_every_string(body, lambda text: text + "\x00"),
        {**body, **nested(60)} if isinstance(body, dict) else nested(60),
    ]
    # A lone surrogate cannot be written as YAML, one of the DAG submit's media types.
    if "yaml" not in str(context.operation.definition.raw.get("requestBody", "")):
        hostile.append(with_every_string(body, lambda text: "\ud800" + text))
    return st.sampled_from(hostile)


SEED = """
id: seeded
tasks:
  - {id: a, command: "true", queue: nobody-listens}
"""


@pytest.fixture
def token():
    user = get_user_model().objects.create_superuser("fuzzer", password=None)
    trigger_run(submit(SEED))  # something real for list endpoints to render
    # The WSGI app would close the test's connection at each request's end, as Django's
    # test client also prevents: the test's transaction must outlive the requests.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=user).key
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_never_errors_and_keeps_its_schema(case, token):
    case.call_and_validate(
        headers={"Authorization": f"Token {token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
