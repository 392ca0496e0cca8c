"""Every call to the admin API (``/ai/...``) becomes an audit event: who, what, when, from
where, and the status it got. Pure ASGI, so the hot path (``/v1``) passes with one prefix check."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.edge.auth import Principal


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/ai/") or path.startswith("/ai/v1/"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            edge = getattr(scope["app"].state, "edge", None)
            if edge is not None:
                principal: Principal | None = scope.get("state", {}).get("principal")
                client = scope.get("client")
                edge.auditor.record(
                    actor=principal.key_id if principal else "anonymous",
                    actor_user=principal.user if principal else "",
                    action=f"{scope['method'][:16]} {_as_sent(scope)}",
                    status=status,
                    source=client[0] if client else "",
                )


MAX_PATH = 512


def _as_sent(scope: Scope) -> str:
    """The request's path as the client sent it (percent-escapes kept: ``%0a`` stays three
    characters, not a line break), bytes outside ASCII escaped, at most ``MAX_PATH`` long."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "backslashreplace")
    text = bytes(raw).decode("ascii", "backslashreplace")
    return text if len(text) <= MAX_PATH else text[:MAX_PATH] + "..."
