"""Access control: the token, the listen rule, the Host guard, and read-only routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest

from kamstrup382.errors import UsageError
from kamstrup382.storage.base import Storage
from kamstrup382.web import create_app
from kamstrup382.web.security import COOKIE, host_name, local_location, site_path
from kamstrup382.web.server import (
    LOOPBACK_HOSTS,
    Listen,
    allowed_hosts,
    check_listen,
    parse_listen,
)

TOKEN = "s3cret-token"


def client_for(app: object, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url=base_url,
    )


@pytest.fixture
async def guarded(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(storage, token=TOKEN)) as client:
        yield client


URLS = (
    "/",
    "/meters/house",
    "/static/dashboard.js",
    "/static/plotly.min.js",
    "/api/openapi.json",
    "/api/meters",
    "/api/meters/house/latest",
    "/api/meters/house/readings?format=csv",
)


@pytest.mark.parametrize("url", URLS)
async def test_without_the_token_everything_is_401(guarded: httpx.AsyncClient, url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await guarded.get(url, headers=headers)
        assert response.status_code == 401, (url, headers)
        assert response.json()["error"] == "unauthorized"
        assert "house" not in response.text
    assert (await guarded.get(url, headers={"Cookie": f"{COOKIE}={TOKEN}"})).status_code == 401


@pytest.mark.parametrize("url", URLS)
async def test_bearer_token_opens_everything(guarded: httpx.AsyncClient, url: str) -> None:
    response = await guarded.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


async def test_token_in_the_address_sets_a_cookie_and_leaves_the_address(
    guarded: httpx.AsyncClient,
) -> None:
    response = await guarded.get("/meters/house", params={"token": TOKEN, "bucket": "hour"})
    assert response.status_code == 303
    assert response.headers["location"] == "/meters/house?bucket=hour"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert TOKEN not in cookie  # the cookie holds a value derived from the token
    value = guarded.cookies[COOKIE]
    # the browser follows the redirect with the cookie; the API calls of the page carry it too
    assert (await guarded.get("/meters/house?bucket=hour")).status_code == 200
    assert (await guarded.get("/api/meters")).status_code == 200
    guarded.cookies.clear()
    assert (await guarded.get("/api/meters")).status_code == 401
    wrong = {"Cookie": f"{COOKIE}={value[:-1]}0"}
    assert (await guarded.get("/api/meters", headers=wrong)).status_code == 401
    assert (await guarded.get("/api/meters", params={"token": TOKEN})).status_code == 200
    assert (await guarded.get("/", params={"token": "nope"})).status_code == 401


async def test_secured_openapi_declares_the_bearer_scheme(guarded: httpx.AsyncClient) -> None:
    doc = (
        await guarded.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    ).json()
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "401" in doc["paths"]["/api/meters"]["get"]["responses"]


async def test_host_guard_on_loopback(storage: Storage) -> None:
    app = create_app(storage, allowed_hosts=LOOPBACK_HOSTS)
    async with client_for(app, base_url="http://127.0.0.1:8382") as client:
        assert (await client.get("/api/meters")).status_code == 200
        assert (
            await client.get("/api/meters", headers={"Host": "localhost:8382"})
        ).status_code == 200
        rebound = await client.get("/api/meters", headers={"Host": "evil.example:8382"})
        assert rebound.status_code == 400
        assert "house" not in rebound.text


@pytest.mark.parametrize(
    "host",
    ["127.0.0.2:8382", "127.9.8.7", "[::1]:8382", "[::1]", "LOCALHOST:1", "localhost.", "k382.lan"],
)
async def test_host_guard_accepts_loopback_addresses_and_the_name_listened_on(
    storage: Storage, host: str
) -> None:
    app = create_app(storage, allowed_hosts=allowed_hosts(Listen("k382.lan", 8382), None))
    async with client_for(app) as client:
        response = await client.get("/api/meters", headers={"Host": host})
        assert response.status_code == 200, host


@pytest.mark.parametrize(
    "host",
    ["evil.example", "127.0.0.1.evil.example", "[::2]:80", "localhost:http", "", "[::1", "::1"],
)
async def test_host_guard_refuses_other_names(storage: Storage, host: str) -> None:
    app = create_app(storage, allowed_hosts=allowed_hosts(Listen("127.0.0.1", 8382), None))
    async with client_for(app) as client:
        response = await client.get("/api/meters", headers={"Host": host})
        assert response.status_code == 400, host
        assert "house" not in response.text


def test_with_a_token_any_host_is_accepted() -> None:
    assert allowed_hosts(Listen("0.0.0.0", 8382), TOKEN) is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.2:8382", "127.0.0.2"),
        ("[::1]:8382", "::1"),
        ("[::1]", "::1"),
        ("Example.ORG.", "example.org"),
        ("localhost:", "localhost"),
        ("::1", None),
        ("a:b", None),
        ("[x]y", None),
        ("", None),
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("location", "local"),
    [
        ("/meters/house?bucket=hour", "/meters/house?bucket=hour"),
        ("http://127.0.0.1:8382/api/meters", "/api/meters"),
        ("http://evil.example/x", "/x"),
        ("//evil.example/x", "/x"),
        ("/\\evil.example/x", "/%5Cevil.example/x"),
        ("\\\\evil.example", "%5C%5Cevil.example"),
        ("/\t/evil.example", "/evil.example"[:0] + "/"),
        ("http://127.0.0.1//evil.example/", "/%2Fevil.example/"),
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
    ],
)
def test_every_location_stays_on_the_site(location: str, local: str) -> None:
    assert local_location(location) == local


def test_site_path_keeps_the_path_the_server_sees() -> None:
    assert site_path("//evil.example/") == "/%2Fevil.example/"
    assert site_path("/\\evil") == "/%5Cevil"
    assert site_path("/a%b \u00e9") == "/a%25b%20%C3%A9"


@pytest.mark.parametrize("path", ["//evil.example/", "/\\evil.example", "//evil.example/meters"])
async def test_the_token_redirect_stays_on_the_site(guarded: httpx.AsyncClient, path: str) -> None:
    response = await guarded.get(path, params={"token": TOKEN})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/")
    assert not location.startswith(("//", "/\\"))


class Counting:
    """Stands for a storage and lists the attributes asked of it."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> object:
        self.asked.append(name)
        return getattr(self.inner, name)


async def test_a_request_without_the_token_does_not_reach_the_storage(storage: Storage) -> None:
    counting = Counting(storage)
    app = create_app(cast(Storage, counting), token=TOKEN)
    async with client_for(app) as client:
        for url in URLS:
            assert (await client.get(url)).status_code == 401
            assert (await client.get(url, params={"token": "wrong"})).status_code == 401
        assert counting.asked == []
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/meters", headers=bearer)).status_code == 200
        assert "meters" in counting.asked


@pytest.mark.parametrize(
    ("text", "listen"),
    [
        ("127.0.0.1:8382", Listen("127.0.0.1", 8382)),
        (":9000", Listen("127.0.0.1", 9000)),
        ("localhost", Listen("localhost", 8382)),
        ("[::1]:8080", Listen("::1", 8080)),
        ("0.0.0.0:0", Listen("0.0.0.0", 0)),
    ],
)
def test_parse_listen(text: str, listen: Listen) -> None:
    assert parse_listen(text) == listen


@pytest.mark.parametrize("text", ["127.0.0.1:http", "::1:80", "[::1", "host:70000", "h:-1"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--http"):
        parse_listen(text)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    check_listen(Listen(host, 8382), None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_other_addresses_need_a_token(host: str) -> None:
    with pytest.raises(UsageError, match="without a token"):
        check_listen(Listen(host, 8382), None)
    check_listen(Listen(host, 8382), TOKEN)


def test_empty_token_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="empty token"):
        create_app(storage, token="")
