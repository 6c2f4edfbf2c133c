"""The DAG admin of dags/admin.py, registered here with the action that starts runs: starting
a run is the business of runs, and the ground floor (dags) does not reach up for it."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html

from dags import params as dag_params
from dags.admin import (
    DagAdmin as DagFileAdmin,
)
from dags.admin import (
    admin_link,
)
from dags.admin_forms import TriggerParamsForm
from dags.models import Dag

from .. import services
from .common import TRIGGER


def default_params(dag: Dag) -> dict:
    """The params a run of `dag` gets unless the trigger gives its own."""
    return dag_params.defaults(dag.dag_spec.params) if dag.dag_spec else {}


@admin.register(Dag)
class DagAdmin(DagFileAdmin):
    """dags/admin.py's DAG admin, with the action that starts runs."""

    actions = ["trigger", *DagFileAdmin.actions]

    def has_trigger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(TRIGGER)

    @admin.action(description="Trigger a run (with params)…", permissions=["trigger"])
    def trigger(self, request: HttpRequest, queryset: QuerySet[Dag]):
        form = TriggerParamsForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Trigger a run",
                "opts": self.model._meta,
                "dags": [(dag, json.dumps(default_params(dag))) for dag in queryset],
                "form": form,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "media": self.media + form.media,
            }
            return TemplateResponse(request, "admin/dags/dag/trigger_run.html", context)
        for dag in queryset:
            try:
                run = services.trigger_run(
                    dag, params=form.cleaned_data["params"], triggered_by="admin"
                )
            except services.TriggerError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                link = admin_link(run, f"run {run.id}")
                self.message_user(request, format_html("DAG “{}”: {} triggered.", dag, link))
        return None
