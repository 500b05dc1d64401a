"""Lists as `{"count", "next", "previous", "results"}` (design.md)."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def paginate(request, queryset, serializer_class, *, represent=None):
    pager = Pages()
    page = pager.paginate_queryset(queryset, request)
    if represent is not None:
        rows = [represent(obj) for obj in page]
    else:
        rows = serializer_class(page, many=True, context={"request": request}).data
    return pager.get_paginated_response(rows)
