from django.contrib import admin

from .models import Dag, DagVersion


class DagVersionInline(admin.TabularInline):
    model = DagVersion
    fields = ("version", "content_hash", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Dag)
class DagAdmin(admin.ModelAdmin):
    list_display = ("dag_id", "name", "is_paused", "is_active", "updated_at")
    list_filter = ("is_paused", "is_active")
    search_fields = ("dag_id", "name")
    readonly_fields = ("current_version", "created_at", "updated_at")
    inlines = [DagVersionInline]


@admin.register(DagVersion)
class DagVersionAdmin(admin.ModelAdmin):
    list_display = ("dag", "version", "created_at")
    readonly_fields = ("dag", "version", "spec", "source", "content_hash", "created_at")
