"""Access control: a bearer token, and read-only headers.

With a token, every request must carry it: ``Authorization: Bearer <token>`` (scripts, the
API), or once ``?token=<token>`` in a browser's address bar: the app then sets an HttpOnly
cookie holding a value derived from it (HMAC-SHA256) and redirects to the same address
without the token, so that it does not stay in the history. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "SECURITY_HEADERS", "SecurityHeaders", "TokenGuard"]

COOKIE = "k382_token"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'",
    ),
)


class SecurityHeaders:
    """Adds headers that keep a browser from sniffing, framing or leaking the dashboard."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TokenGuard:
    """Refuses (401) any request that does not carry ``token``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty token protects nothing")
        self.app = app
        self.token = token.encode()
        # the cookie holds a value derived from the token, not the token itself
        self.cookie_value = hmac.new(self.token, b"k382 dashboard cookie", "sha256").hexdigest()

    def _set_cookie(self) -> bytes:
        return f"{COOKIE}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict".encode()

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        auth = headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and self._matches(credentials.strip()):
            await self.app(scope, receive, send)
            return
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no cookie
            cookie = SimpleCookie()
        if COOKIE in cookie and hmac.compare_digest(
            cookie[COOKIE].value.encode(), self.cookie_value.encode()
        ):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and self._matches(given[-1]):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            if scope["path"].startswith("/api/"):
                # the API sees the request without the token among its parameters
                await self.app({**scope, "query_string": rest.encode()}, receive, send)
                return
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", location.encode("latin-1")),
                        (b"set-cookie", self._set_cookie()),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps(
            {"error": "unauthorized", "detail": "this dashboard needs its token"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="k382"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
