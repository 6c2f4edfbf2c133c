"""Forms of the DAG admin: submit or resubmit a DAG file, and the params of a manual run."""

from __future__ import annotations

import json

from django import forms
from django.db import transaction

from . import services
from .models import Dag

EXAMPLE_DAG = """id: my-dag
schedule: null            # or cron such as "0 * * * *", or @daily
tasks:
  - id: hello
    command: "echo hello"
  - id: world
    command: "echo world"
    depends_on: [hello]"""

YAML_WIDGET_ATTRS = {
    "rows": 24,
    "cols": 100,
    "spellcheck": "false",
    "style": "font-family: monospace; width: 100%; max-width: 60em;",
}


class _OtherDag(Exception):
    """The resubmitted YAML names a different DAG; raised to roll its submit back."""


class DagSubmitForm(forms.ModelForm):
    """One YAML textarea; validating the form is submitting the file with submit_dag.

    submit_dag validates and stores in one step and stores nothing when it rejects the
    file, so the form calls it while cleaning and turns SpecError into field errors.
    `result` holds what it did; `save()` only hands back the DAG it wrote.
    """

    yaml = forms.CharField(
        label="DAG file (YAML)",
        strip=False,
        widget=forms.Textarea(attrs={**YAML_WIDGET_ATTRS, "placeholder": EXAMPLE_DAG}),
        help_text=(
            "One DAG file, the same text manage.py submit_dag and POST /api/v1/dags take. "
            "Every problem is listed at once; a rejected file stores nothing."
        ),
    )

    class Meta:
        model = Dag
        fields = ()

    result: services.SubmitResult | None = None

    def clean(self) -> dict:
        cleaned = super().clean()
        text = cleaned.get("yaml")
        if text is None:  # already reported as required
            return cleaned
        try:
            # A savepoint, so that a check after the submit can still undo it.
            with transaction.atomic():
                self.result = services.submit_dag(text)
                self.check_result(self.result)
        except services.SpecError as exc:
            self.result = None
            for error in exc.errors:
                self.add_error("yaml", error)
        except _OtherDag as exc:
            self.result = None
            self.add_error("yaml", str(exc))
        return cleaned

    def check_result(self, result: services.SubmitResult) -> None:
        """Refuse a submit by raising _OtherDag; any DAG id is fine when adding."""

    def save(self, commit: bool = True) -> Dag:
        assert self.result is not None, "save() comes after a clean() that submitted"
        return self.result.dag

    def save_m2m(self) -> None:
        """Nothing to do: submit_dag wrote everything."""


class DagResubmitForm(DagSubmitForm):
    """The current version's YAML, prefilled, to edit and submit as a new version."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["yaml"]
        field.label = "Resubmit the DAG file"
        field.help_text = (
            "Edit and save to store a new version (runs keep the version they started "
            "with). Identical content changes nothing."
        )
        field.widget.attrs.pop("placeholder", None)
        current = self.instance.current_version
        if current is not None:
            self.initial.setdefault("yaml", current.source)

    def check_result(self, result: services.SubmitResult) -> None:
        if result.dag.pk != self.instance.pk:
            dag_id = self.instance.dag_id
            raise _OtherDag(
                f"this file is DAG '{result.dag.dag_id}', not '{dag_id}': keep "
                f"'id: {dag_id}' here, and use Add DAG to submit another DAG"
            )


class TriggerParamsForm(forms.Form):
    """The params of a manual run, as a JSON object."""

    params = forms.CharField(
        label="Params (JSON object)",
        required=False,
        initial="{}",
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 8, "cols": 80, "spellcheck": "false", "style": "font-family: monospace"}
        ),
        help_text='Merged over the DAG\'s default params, e.g. {"day": "monday"}. '
        "Leave {} to use the defaults.",
    )

    def clean_params(self) -> dict:
        text = self.cleaned_data["params"].strip()
        if not text:
            return {}
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(params, dict):
            raise forms.ValidationError(
                f'params must be a JSON object such as {{"day": "monday"}}, not {_json_kind(params)}'
            )
        return params


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"
