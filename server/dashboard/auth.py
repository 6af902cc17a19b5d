"""Who may see what: every route but the login page needs a valid token, from the login
cookie or an `Authorization: Bearer` header; starting and stopping runs needs the
coordinator role. Every refusal is logged (logger `fedrad.dashboard.access`) with the
route, the reason and the caller's address, never the token."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from fedrad.server.dashboard.tokens import Holder, Role, holder_of

COOKIE = "fedrad_dashboard_token"
access_log = logging.getLogger("fedrad.dashboard.access")

_bearer = HTTPBearer(auto_error=False, description="a token from `fedrad dashboard token add`")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="set by the login page")


class Refused(Exception):
    """A request the dashboard will not serve: 401 without a valid token, 403 for a role
    that may not do it, 501 for what the dashboard cannot do yet."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refuse(request: Request, status: int, reason: str) -> Refused:
    client = request.client.host if request.client else "unknown"
    access_log.warning(
        "refused %s %s with %d from %s: %s", request.method, request.url.path, status, client,
        reason,
    )  # fmt: skip
    return Refused(status, reason)


def signed_in(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Holder:
    token = bearer.credentials if bearer else cookie
    if not token:
        raise refuse(request, 401, "no token: sign in, or send Authorization: Bearer")
    holder = holder_of(request.app.state.engine, token)
    if holder is None:
        raise refuse(request, 401, "unknown token")
    return holder


def coordinator(request: Request, holder: Annotated[Holder, Depends(signed_in)]) -> Holder:
    if holder.role != Role.coordinator:
        raise refuse(request, 403, f"{holder.name} is a {holder.role}; this needs a coordinator")
    return holder


SignedIn = Annotated[Holder, Depends(signed_in)]
Coordinator = Annotated[Holder, Depends(coordinator)]
