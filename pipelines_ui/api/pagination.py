"""Lists as `{"count", "next", "previous", "results"}` (design.md), and their `page` and
`page_size` parameters: declared in the schema of every list, checked as declared."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from pipelines_ui.api.params import DIGITS, one, positive_int

MAX_PAGE_SIZE = 500
PAGE_PARAMETERS = [
    {
        "name": "page",
        "in": "query",
        "description": "a page of the list, from 1 to the last (`count` / `page_size`, rounded up); absent or empty: 1",
        "schema": DIGITS,
    },
    {
        "name": "page_size",
        "in": "query",
        "description": f"items per page, from 1 to {MAX_PAGE_SIZE}; absent or empty: 50",
        "schema": DIGITS,
    },
]


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        # DRF quietly takes its default for `page_size=abc` and its maximum for 100000: a 400
        # says what is wrong instead of answering another question.
        return _bounded(request.query_params, "page_size", self.page_size, self.max_page_size)

    def get_page_number(self, request, paginator):
        number = _bounded(request.query_params, "page", 1, None)
        if number > paginator.num_pages:
            raise ValidationError({"page": f"no page {number}: this list has {paginator.num_pages}"})
        return number


class MetricPages(Pages):
    """A run's metric points: small rows, and a step may log millions of them, so pages are larger."""

    page_size = 1000
    max_page_size = 10_000


def _bounded(params, name: str, default: int, maximum: int | None) -> int:
    number = positive_int(one(params, name), name, max_digits=9)
    if number is None:
        return default
    if number < 1 or (maximum is not None and number > maximum):
        raise ValidationError({name: f"from 1 to {maximum}" if maximum else "1 or more"})
    return number


def paginate(request, queryset, serializer_class, *, represent=None, pages: type[Pages] = Pages):
    pager = pages()
    page = pager.paginate_queryset(queryset, request)
    if represent is not None:
        rows = [represent(obj) for obj in page]
    else:
        rows = serializer_class(page, many=True, context={"request": request}).data
    return pager.get_paginated_response(rows)


def declare_page_parameters(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation that answers a page takes `page` and
    `page_size`, and may answer 400 for them. An operation that declares one itself (other
    bounds) keeps its own."""
    components = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            ok = operation.get("responses", {}).get("200", {})
            ref = ok.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
            schema = components.get(ref.rsplit("/", 1)[-1], {})
            if not {"count", "next", "previous", "results"} <= set(schema.get("properties", {})):
                continue
            names = {p["name"] for p in operation.get("parameters", [])}
            operation.setdefault("parameters", []).extend(p for p in PAGE_PARAMETERS if p["name"] not in names)
            if "400" not in operation["responses"]:
                operation["responses"]["400"] = BAD_REQUEST
    return result


BAD_REQUEST = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    "description": "a bad query parameter, named in `errors`",
}
