"""Access control: a bearer token, the ``Host`` guard, redirects that stay on the site, and
protective headers.

With a token, every request must carry it: ``Authorization: Bearer <token>`` (scripts, the
API), or once ``?token=<token>`` in a browser's address bar: the app then sets an HttpOnly
cookie holding a value derived from it (HMAC-SHA256) and redirects to the same address
without the token, so that it does not stay in the history. Tokens are compared in constant time.

Every ``Location`` the app sends is made a path on this site (:func:`local_location`): a
request for ``//evil.example/`` or ``/\\evil.example`` (or their percent-encoded forms) is
never sent elsewhere.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "SECURITY_HEADERS",
    "HostGuard",
    "SecurityHeaders",
    "TokenGuard",
    "host_name",
    "local_location",
    "site_path",
]

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


#: Characters left as they are in a path (RFC 3986 pchar and "/"); "%" only in encoded paths.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?%"


def site_path(path: str, *, encoded: bool = False) -> str:
    """``path`` as a reference to this site that no browser reads as another host.

    ``encoded``: ``path`` is already percent-encoded (else it is the decoded path of a
    request). Backslashes, spaces and controls are encoded, and a leading ``//`` (which a
    browser takes for ``//host``) becomes ``/%2F``, which the server decodes to the same path.
    """
    path = quote(path, safe=_PATH_SAFE + ("%" if encoded else ""))
    if path.startswith("//"):
        path = "/%2F" + path[2:]
    return path


def local_location(location: str) -> str:
    """A ``Location`` value made a reference to this site: any scheme and host dropped."""
    parts = urlsplit(location)
    out = site_path(parts.path, encoded=True) or "/"
    if parts.query:
        out += "?" + quote(parts.query, safe=_QUERY_SAFE)
    if parts.fragment:
        out += "#" + quote(parts.fragment, safe=_QUERY_SAFE)
    return out


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header, lowercase, without port or brackets; ``None`` if malformed.

    ``127.0.0.2:8382`` -> ``127.0.0.2``, ``[::1]:8382`` -> ``::1``, ``Example.org.`` ->
    ``example.org``.
    """
    header = header.strip()
    port: str | None
    if header.startswith("["):
        name, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = header.partition(":")
        port = port_text if colon else None
    if port and not (port.isascii() and port.isdigit()):
        return None
    name = name.lower().rstrip(".")
    return name or None


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostGuard:
    """Refuses (400) a request whose ``Host`` is neither one of ``names`` nor a loopback
    address: a web page elsewhere cannot reach a dashboard on loopback through a name of its
    own that resolves to 127.0.0.1 (DNS rebinding)."""

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = {n.strip("[]").lower().rstrip(".") for n in names}

    def allows(self, header: str | None) -> bool:
        name = host_name(header) if header is not None else None
        return name is not None and (name in self.names or _is_loopback(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allows(Headers(scope=scope).get("host")):
            await self.app(scope, receive, send)
            return
        body = b"Invalid host header"
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """Adds headers that keep a browser from sniffing, framing or leaking the dashboard, and
    keeps every redirect on the site (:func:`local_location`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, local_location(v.decode("latin-1")).encode())
                    if k.lower() == b"location"
                    else (k, v)
                    for k, v in message.get("headers", [])
                ]
                message["headers"] = [*headers, *SECURITY_HEADERS]
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
            location = site_path(scope.get("root_path", "") + scope["path"])
            location += f"?{rest}" if rest else ""
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", location.encode("ascii")),
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
