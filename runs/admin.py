from django.contrib import admin

from .models import DagRun, DeadLetter, TaskAttempt, TaskInstance


class TaskInstanceInline(admin.TabularInline):
    model = TaskInstance
    fields = (
        "task_id",
        "state",
        "try_number",
        "max_tries",
        "started_at",
        "finished_at",
        "worker",
        "exit_code",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(DagRun)
class DagRunAdmin(admin.ModelAdmin):
    list_display = ("id", "dag", "state", "triggered_by", "logical_date", "created_at")
    list_filter = ("state", "triggered_by")
    search_fields = ("id", "dag__dag_id")
    readonly_fields = [f.name for f in DagRun._meta.fields]
    inlines = [TaskInstanceInline]


class TaskAttemptInline(admin.StackedInline):
    model = TaskAttempt
    readonly_fields = [f.name for f in TaskAttempt._meta.fields]
    extra = 0
    can_delete = False


@admin.register(TaskInstance)
class TaskInstanceAdmin(admin.ModelAdmin):
    list_display = ("task_id", "run", "state", "try_number", "max_tries", "worker")
    list_filter = ("state",)
    search_fields = ("task_id", "run__id")
    readonly_fields = [f.name for f in TaskInstance._meta.fields]
    inlines = [TaskAttemptInline]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "dag_id", "task_id", "attempts", "error", "created_at", "retried_at")
    search_fields = ("dag_id", "task_id")
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
