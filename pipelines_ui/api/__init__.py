"""The REST API (design.md, REST API): tokens, resources, the OpenAPI schema."""
