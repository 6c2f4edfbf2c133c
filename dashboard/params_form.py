"""The trigger form of a DAG's page: one input per param, read back the way the CLI reads
`--param KEY=VALUE` (JSON when it parses, else text)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import QueryDict

from dags import boundary
from dags import params as dag_params
from dags.dag_spec import DagSpec

PARAM_PREFIX = "param:"  # the trigger form's input of param NAME is "param:NAME"


@dataclass(frozen=True)
class ParamField:
    """One input of the trigger form: `name` is the param, `value` its default as the
    form shows it (read back by parse_param_value), `description` from a typed param."""

    name: str
    value: str
    description: str = ""

    @property
    def input_name(self) -> str:
        return PARAM_PREFIX + self.name


def param_fields(spec: DagSpec) -> list[ParamField]:
    """One field per param of the DAG, in file order, prefilled with its default."""
    fields = []
    for name, declared in spec.params.items():
        typed = dag_params.is_typed(declared)
        default = dag_params.defaults({name: declared}).get(name)
        description = str(declared.get("description", "")) if typed else ""
        fields.append(ParamField(name, "" if default is None else _form_text(default), description))
    return fields


def _form_text(value: Any) -> str:
    """`value` as text that parse_param_value() reads back as `value`: a string as it is
    unless it would read as JSON ("3" becomes "\"3\""), anything else as JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def parse_param_value(text: str) -> Any:
    """A param as typed in the form, the CLI's `--param` rule: JSON when it parses (3,
    true, [1,2]), else the text. Raises boundary.LimitExceeded for JSON nested too deep."""
    boundary.check_json_depth(text.encode("utf-8", "surrogatepass"))
    try:
        return json.loads(text)
    except ValueError:
        return text


def params_from_form(spec: DagSpec, form: QueryDict) -> dict[str, Any]:
    """The params a trigger form posted: those of the DAG's params it holds, parsed."""
    return {
        name: parse_param_value(form[PARAM_PREFIX + name])
        for name in spec.params
        if PARAM_PREFIX + name in form
    }
