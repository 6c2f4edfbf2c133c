"""A DAG's params (CONTRACT section 8): plain values are defaults, typed ones are JSON
Schema; a trigger's params overlay the defaults and are validated, and a 400 names each
bad param, creating nothing. Submit refuses a typed param that cannot work."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dags.spec import SpecError, parse_dag
from dashboard.params_form import param_fields
from runs.models import DagRun
from runs.services import ParamsRefused, trigger_run
from testkit.engine import submit

pytestmark = pytest.mark.django_db(transaction=True)

TYPED = """
id: typed
params:
  n: {type: integer, default: 2, minimum: 1, description: how many}
  who: world
  mode: {type: string, enum: [full, quick]}
  tags: {type: array, items: {type: string}, default: []}
tasks:
  - {id: a, command: "true", queue: nobody-listens}
"""


def test_a_run_gets_the_typed_defaults_not_their_declarations():
    run = trigger_run(submit(TYPED), params={"mode": "quick"})
    assert run.params == {"n": 2, "who": "world", "mode": "quick", "tags": []}


def test_the_trigger_overlays_and_checks_each_param_against_its_type():
    submit(TYPED)
    run = trigger_run("typed", params={"n": 5, "mode": "full", "who": {"any": "value"}})
    assert run.params == {"n": 5, "who": {"any": "value"}, "mode": "full", "tags": []}


def test_the_api_answers_400_naming_each_bad_param_and_creates_nothing(operator):
    submit(TYPED)
    response = operator.post(
        "/api/v1/dags/typed/runs",
        {"params": {"n": 0, "tags": ["a", 3], "bogus": 1}},
        format="json",
    )
    assert response.status_code == 400, response.json()
    problems = response.json()["params"]
    assert problems == {
        "bogus": "unknown parameter (this DAG's params: n, who, mode, tags)",
        "n": "0 is less than the minimum of 1",
        "tags": "[1] 3 is not of type 'string'",
        "mode": "required: it has no default",
    }
    assert DagRun.objects.count() == 0


def test_the_cli_path_refuses_a_wrong_type_with_the_params_name():
    submit(TYPED)
    with pytest.raises(CommandError, match=r"n: 'abc' is not of type 'integer'"):
        call_command(
            "trigger_dag", "typed", "--param", "n=abc", "--param", "mode=full", stdout=StringIO()
        )
    with pytest.raises(ParamsRefused, match=r"who2: unknown parameter"):
        trigger_run("typed", params={"mode": "full", "who2": "x"})
    assert DagRun.objects.count() == 0


@pytest.mark.parametrize(
    ("declared", "error"),
    [
        (
            "{type: integer, minimun: 1}",
            "params.n: unknown key 'minimun' for a typed param (did you mean 'minimum'?)",
        ),
        ("{type: integr}", "params.n: 'integr' is not valid under any of the given schemas"),
        ("{type: integer, default: two}", "params.n: the default 'two' is not of type 'integer'"),
    ],
)
def test_submit_refuses_a_typed_param_that_cannot_work(declared, error):
    with pytest.raises(SpecError) as caught:
        parse_dag(f"id: bad\nparams:\n  n: {declared}\ntasks:\n  - {{id: a, command: 'true'}}\n")
    assert f"dag: {error}" in caught.value.errors


def test_a_scheduled_dag_has_a_default_for_every_param():
    with pytest.raises(SpecError) as caught:
        parse_dag(
            "id: nightly\nschedule: '@daily'\nparams:\n  day: {type: string}\n"
            "tasks:\n  - {id: a, command: 'true'}\n"
        )
    assert caught.value.errors == [
        "dag: params day have no default, and the runs of the schedule have nobody to give "
        "them; add a default"
    ]


def test_the_trigger_form_shows_defaults_and_descriptions():
    fields = {f.name: (f.value, f.description) for f in param_fields(parse_dag(TYPED))}
    assert fields == {
        "n": ("2", "how many"),
        "who": ("world", ""),
        "mode": ("", ""),
        "tags": ("[]", ""),
    }
