"""The DAG admin: DAGs are added and changed by submitting YAML, and run by actions that
call the same services as the API. Also the display helpers runs/admin.py shares."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from . import services
from .admin_forms import DagResubmitForm, DagSubmitForm
from .models import Dag, DagVersion, Pool
from .pools import PoolError, create_or_update_pool

# --- shared display helpers ---------------------------------------------------------------

STATE_COLOURS = {
    "success": "#2e7d32",
    "failed": "#c62828",
    "upstream_failed": "#ef6c00",
    "running": "#1565c0",
    "queued": "#6a1b9a",
    "up_for_retry": "#f9a825",
    "cancelled": "#616161",
    "skipped": "#9e9e9e",
    "pending": "#9e9e9e",
}


def state_badge(state: str):
    colour = STATE_COLOURS.get(state, "#616161")
    return format_html(
        '<span style="color: white; background: {}; padding: 1px 6px; '
        'border-radius: 8px; white-space: nowrap;">{}</span>',
        colour,
        state,
    )


def admin_link(obj: Model, text: object = None):
    """A link to obj's admin page (its view page for those who may not change it)."""
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj if text is None else text)


def preformatted(text: str):
    if not text:
        return "-"
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0; max-height: 40em; overflow: auto;">{}</pre>',
        text,
    )


def pretty_json(value: object):
    return preformatted(json.dumps(value, indent=2, sort_keys=True))


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def excerpt(text: str, length: int = 80) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first if len(first) <= length else first[: length - 1] + "…"


def dag_filter(field_path: str) -> type[admin.SimpleListFilter]:
    """A list filter by DAG id that offers DAG files only (jobs and workflows each make a
    DAG of their own, too many to list)."""

    class DagFilter(admin.SimpleListFilter):
        title = "DAG"
        parameter_name = "dag"

        def lookups(self, request, model_admin):
            ids = Dag.objects.filter(kind=Dag.Kind.DAG).values_list("dag_id", flat=True)
            return [(dag_id, dag_id) for dag_id in ids]

        def queryset(self, request, queryset):
            if self.value():
                return queryset.filter(**{field_path: self.value()})
            return queryset

    return DagFilter


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the engine writes: anyone with the view permission sees them, nobody
    adds, edits or deletes them here. Changes go through actions that call services."""

    def get_queryset(self, request: HttpRequest):
        # The view page shows the same related rows as the list: load them with the row.
        queryset = super().get_queryset(request)
        if isinstance(self.list_select_related, list | tuple):
            queryset = queryset.select_related(*self.list_select_related)
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyInline:
    """Mixin for inlines of engine-owned rows: shown, never added, changed or deleted."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# --- DAGs -----------------------------------------------------------------------------------

SUBMIT = "dags.submit_dag"
OUTCOME_MESSAGES = {
    "created": (messages.SUCCESS, "DAG “{dag}” created: version {version}."),
    "updated": (messages.SUCCESS, "DAG “{dag}”: new version {version} stored."),
    "unchanged": (messages.INFO, "DAG “{dag}” unchanged: the file is version {version} as is."),
}
# The DAG forms have one thing to do, submit the file: one Save button.
ONE_BUTTON = {"show_save_and_add_another": False, "show_save_and_continue": False}


class DagAdmin(admin.ModelAdmin):
    """A DAG is added and changed by submitting its file. Registered by runs/admin/, which
    adds the action that starts runs (starting runs is the business of runs)."""

    list_display = (
        "dag_id",
        "name",
        "kind",
        "version",
        "schedule_display",
        "is_paused",
        "is_active",
        "runs_link",
        "updated_at",
    )
    list_display_links = ("dag_id", "name")
    list_select_related = ("current_version",)
    list_filter = ("is_active", "is_paused", "kind")
    search_fields = ("dag_id", "name", "description")
    date_hierarchy = "created_at"
    actions = ["pause", "unpause", "deactivate"]
    change_fields = (
        "dag_id",
        "name",
        "description",
        "kind",
        "schedule_display",
        "timezone_display",
        "is_paused",
        "is_active",
        "version",
        "versions",
        "runs_link",
        "created_at",
        "updated_at",
    )

    # Adding and changing are submitting a DAG file.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SUBMIT)

    def has_change_permission(self, request: HttpRequest, obj: Dag | None = None) -> bool:
        # Jobs' and workflows' DAGs come from their API, not from a DAG file.
        if obj is not None and obj.kind != Dag.Kind.DAG:
            return False
        return request.user.has_perm(SUBMIT)

    def has_delete_permission(self, request: HttpRequest, obj: Dag | None = None) -> bool:
        return False  # runs keep their DAG (PROTECT); "Deactivate" is the delete

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dags.pause_dag")

    def has_deactivate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SUBMIT)

    def get_fieldsets(self, request: HttpRequest, obj: Dag | None = None):
        if obj is None:
            return [(None, {"fields": ["yaml"]})]
        fieldsets: list[tuple[str | None, dict]] = [(None, {"fields": self.change_fields})]
        if self.has_change_permission(request, obj):
            fieldsets.append(("Submit a new version", {"fields": ["yaml"]}))
        else:
            fieldsets.append(("DAG file (current version)", {"fields": ["current_source"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Dag | None = None):
        return () if obj is None else (*self.change_fields, "current_source")

    def get_form(self, request: HttpRequest, obj: Dag | None = None, change=False, **kwargs):
        kwargs["form"] = DagResubmitForm if obj is not None else DagSubmitForm
        return super().get_form(request, obj, change, **kwargs)

    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, {**(extra_context or {}), **ONE_BUTTON})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), **ONE_BUTTON}
        )

    def save_model(self, request, obj: Dag, form: DagSubmitForm, change: bool) -> None:
        # The form's clean() stored it with submit_dag; say what that did.
        result = form.result
        assert result is not None, "a form that did not submit is not saved"
        level, text = OUTCOME_MESSAGES[result.outcome]
        self.message_user(request, text.format(dag=obj, version=result.version.version), level)

    def save_related(self, request, form, formsets, change) -> None:
        pass  # nothing related is edited here

    def response_add(self, request, obj: Dag, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:dags_dag_change", args=[obj.pk]))

    def response_change(self, request, obj: Dag):
        return HttpResponseRedirect(reverse("admin:dags_dag_change", args=[obj.pk]))

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- columns and read-only fields

    @admin.display(description="version", ordering="current_version__version")
    def version(self, dag: Dag):
        if dag.current_version is None:
            return "-"
        return admin_link(dag.current_version, f"v{dag.current_version.version}")

    @admin.display(description="schedule")
    def schedule_display(self, dag: Dag) -> str:
        return dag.schedule or "manual only"

    @admin.display(description="timezone")
    def timezone_display(self, dag: Dag) -> str:
        return dag.timezone

    @admin.display(description="runs")
    def runs_link(self, dag: Dag):
        query = urlencode({"dag": dag.dag_id})
        return format_html(
            '<a href="{}?{}">runs</a>', reverse("admin:runs_dagrun_changelist"), query
        )

    @admin.display(description="all versions")
    def versions(self, dag: Dag):
        rows = dag.versions.only("version", "created_at").order_by("-version")
        return format_html_join(
            ", ",
            "{} ({})",
            ((admin_link(v, f"v{v.version}"), f"{v.created_at:%Y-%m-%d %H:%M}") for v in rows),
        )

    @admin.display(description="YAML source")
    def current_source(self, dag: Dag):
        return preformatted(dag.current_version.source if dag.current_version else "")

    # --- actions

    @admin.action(description="Pause (no scheduled runs)", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Dag]) -> None:
        self._set_paused(request, queryset, True)

    @admin.action(description="Unpause", permissions=["pause"])
    def unpause(self, request: HttpRequest, queryset: QuerySet[Dag]) -> None:
        self._set_paused(request, queryset, False)

    def _set_paused(self, request: HttpRequest, queryset: QuerySet[Dag], paused: bool) -> None:
        dags = [services.set_paused(dag, paused) for dag in queryset]
        done = "Paused" if paused else "Unpaused"
        self.message_user(request, f"{done}: {', '.join(dag.dag_id for dag in dags)}.")

    @admin.action(description="Deactivate (no new runs, history kept)", permissions=["deactivate"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Dag]) -> None:
        dags = [services.deactivate(dag) for dag in queryset]
        self.message_user(
            request,
            f"Deactivated: {', '.join(dag.dag_id for dag in dags)}. "
            "Submitting a DAG's file again reactivates it.",
        )


@admin.register(DagVersion)
class DagVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable: runs point at the one they started with."""

    list_display = ("__str__", "dag", "version", "short_hash", "created_at")
    list_select_related = ("dag",)
    list_filter = ("dag__kind",)
    search_fields = ("dag__dag_id",)
    date_hierarchy = "created_at"
    fields = ("dag", "version", "content_hash", "created_at", "source_display", "spec_display")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        # The lists need neither text; a change page loads them when it shows them.
        return super().get_queryset(request).defer("spec", "source")

    @admin.display(description="content hash")
    def short_hash(self, version: DagVersion) -> str:
        return version.content_hash[:12]

    @admin.display(description="YAML source")
    def source_display(self, version: DagVersion):
        return preformatted(version.source)

    @admin.display(description="normalized spec")
    def spec_display(self, version: DagVersion):
        return pretty_json(version.spec)


# --- pools ----------------------------------------------------------------------------------


class _PoolExists(Exception):
    """The add form named an existing pool; raised to roll back the update it made."""


class PoolForm(forms.ModelForm):
    """Name, slots and description; validating the form is writing the pool with
    create_or_update_pool, whose PoolError becomes the error of the field it names.

    The fields are declared and excluded from the model, so that Django's model checks do
    not repeat the service's rules (less clearly) or see the pool just created as a
    duplicate. `result` holds what the service did; `save()` hands back its pool.
    """

    name = forms.CharField(
        max_length=100,
        help_text="Lower-case letters, digits, '_', '.' and '-': what tasks give as `pool:`.",
    )
    slots = forms.IntegerField(help_text="At most this many of the pool's tasks run at once.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    class Meta:
        model = Pool
        exclude = ("name", "slots", "description", "running", "created_at")

    result: tuple[Pool, bool] | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:  # the admin shows `name` read-only then
            self.initial.setdefault("slots", self.instance.slots)
            self.initial.setdefault("description", self.instance.description)

    def clean(self) -> dict:
        cleaned = super().clean()
        adding = self.instance.pk is None
        name = cleaned.get("name") if adding else self.instance.name
        if name is None or cleaned.get("slots") is None:  # already reported
            return cleaned
        try:
            with transaction.atomic():  # a savepoint, so that _PoolExists undoes the update
                self.result = create_or_update_pool(name, cleaned["slots"], cleaned["description"])
                if adding and not self.result[1]:
                    raise _PoolExists
        except PoolError as exc:
            self.result = None
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        except _PoolExists:
            self.result = None
            self.add_error("name", f"a pool named '{name}' exists; change it from the pool list")
        return cleaned

    def save(self, commit: bool = True) -> Pool:
        assert self.result is not None, "save() comes after a clean() that wrote the pool"
        return self.result[0]

    def save_m2m(self) -> None:
        """Nothing to do: create_or_update_pool wrote everything."""


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    """Pools are added and resized through dags/pools.py, as by the API; `running` is the
    engine's count. No delete: tasks name pools, and the engine counts in them."""

    form = PoolForm
    list_display = ("name", "slots", "running", "description_excerpt")
    search_fields = ("name", "description")

    def get_fields(self, request: HttpRequest, obj: Pool | None = None):
        if obj is None:
            return ("name", "slots", "description")
        return ("name", "slots", "running", "description", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Pool | None = None):
        # No renaming: that would strand the tasks that name the pool.
        return () if obj is None else ("name", "running", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: Pool | None = None) -> bool:
        return False

    def save_model(self, request, obj: Pool, form: PoolForm, change: bool) -> None:
        pass  # the form's clean() wrote it with create_or_update_pool

    @admin.display(description="description")
    def description_excerpt(self, pool: Pool) -> str:
        return excerpt(pool.description)
