"""Bearer-token protection for the read API (and any other route that opts in with `require_token`).

Tokens come from API_TOKENS (comma-separated, so an old and a new token both work while one is being
rotated). With no tokens configured the routes are open: development only, since production refuses to
start without them, and start-up logs a warning saying so.
"""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from errors import Unauthorized
from security import constant_time_in

# auto_error=False: a missing or non-Bearer header reaches require_token as None, so the 401 leaves in
# the service's own error shape rather than FastAPI's. The scheme also puts "Authorize" into /docs.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="One of the tokens in API_TOKENS, as `Authorization: Bearer <token>`.",
)


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Refuse the request with 401 `unauthorized` unless it carries one of the configured tokens."""
    check_token(credentials.credentials if credentials else None, request.app.state.settings.api_tokens)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, read as `bearer` reads it (for routes
    served ahead of FastAPI's dependency solving); None when there is none."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if authorization and token and scheme.lower() == "bearer" else None


def check_token(token: str | None, tokens: list[str]) -> None:
    if not tokens:
        return
    if token is None:
        raise Unauthorized(
            "this route needs an Authorization: Bearer <token> header", headers={"WWW-Authenticate": "Bearer"}
        )
    # Every configured token is compared in full, so the timing says nothing about how close a guess was.
    if not constant_time_in(token, tokens):
        raise Unauthorized(
            "the bearer token is not valid", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
