"""Every list: {"count", "next", "previous", "results"}, ?page=N&page_size=N (max 1,000).

A malformed page or page size is the client's mistake, answered with a 400 naming the
parameter (DRF would answer ?page=abc with a 404 and ignore ?page_size=abc).
"""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


def whole_number(request, name: str) -> None:
    value = request.query_params.get(name)
    if value is not None and not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise ValidationError({name: f"must be a whole number from 1, got {value[:40]!r}"})


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000
    last_page_strings = ()  # ?page=last is not a page number either

    def paginate_queryset(self, queryset, request, view=None):
        whole_number(request, self.page_query_param)
        whole_number(request, self.page_size_query_param)
        return super().paginate_queryset(queryset, request, view)
