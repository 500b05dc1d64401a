"""`Authorization: Bearer <token>` for Django REST framework."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from pipelines_ui.api.tokens import token_authenticate


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer <token>, with one token")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("the token is not ASCII") from None
        token = token_authenticate(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("the token is unknown, expired or revoked")
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes unauthenticated requests 401 (with this challenge) rather than 403.
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names the token (drf-spectacular finds it by the class it targets)."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "a token from /account/tokens/"}
