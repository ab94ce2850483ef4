"""docs/api/openapi.yaml is a valid OpenAPI document and describes exactly the routes the services register."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
from werkzeug.datastructures import Headers

from vigie_api import REPO, SPEC_PATH, Reply

ROUTE = re.compile(r'router\.add\(http::Verb::(\w+?)_?, "([^"]+)"')
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def registered_routes() -> set[tuple[str, str]]:
    routes = set()
    # The services' own routes, and the one the gateway answers itself (the summary); the gateway's forwarded routes
    # are the services' paths.
    sources = [
        *sorted((REPO / "services").glob("*/src/*_api.cpp")),
        REPO / "services" / "gateway" / "src" / "gateway.cpp",
    ]
    for source in sources:
        for method, path in ROUTE.findall(source.read_text(encoding="utf-8")):
            routes.add((method, path))
    return routes


def test_the_document_is_valid_openapi():
    document, _ = read_from_filename(str(SPEC_PATH))
    validate(document)


def test_every_registered_route_is_described_and_nothing_else(spec):
    registered = registered_routes()
    assert len(registered) >= 10, f"route scan found too little: {registered}"
    described = {
        (method, path)
        for path, item in spec.document["paths"].items()
        if path.startswith("/api/")
        for method in item
        if method in HTTP_METHODS
    }
    assert registered == described, (
        f"in the code only: {sorted(registered - described)}; in the spec only: {sorted(described - registered)}"
    )


def test_request_bodies_refuse_unknown_fields(spec):
    for name, schema in spec.document["components"]["schemas"].items():
        if schema.get("type") == "object" and name not in ("Problem", "ReadinessChecks"):
            assert schema.get("additionalProperties") is False, f"{name} must set additionalProperties: false"


def test_every_error_is_problem_json_and_every_api_response_has_a_request_id(spec):
    components = spec.document["components"]["responses"]
    for path, item in spec.document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = components[response["$ref"].rsplit("/", 1)[1]]
                where = f"{method.upper()} {path} {status}"
                if int(status) >= 400:
                    assert list(response.get("content", {})) == ["application/problem+json"], where
                if path.startswith("/api/") and status != "413":
                    assert "X-Request-Id" in response.get("headers", {}), where
                if status == "401":
                    assert "WWW-Authenticate" in response["headers"], where
                if status == "503" and path.startswith("/api/"):
                    assert "Retry-After" in response["headers"], where


def test_only_sign_up_and_login_are_open(spec):
    open_operations = {
        (method, path)
        for path, item in spec.document["paths"].items()
        if path.startswith("/api/")
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("security") == []
    }
    assert open_operations == {("post", "/api/v1/users"), ("post", "/api/v1/auth/login")}
    assert spec.document["security"] == [{"bearer": []}]


USER = {
    "id": "0b0e7f0e-1111-4222-8333-444455556666",
    "email": "ada@example.com",
    "name": "Ada",
    "role": "user",
    "created_at": "2026-01-01T00:00:00.000000Z",
    "updated_at": "2026-01-01T00:00:00.000000Z",
}
PROBLEM = {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "field 'email' is required"}


def reply(status: int, body, content_type: str = "application/json", **headers: str) -> Reply:
    all_headers = Headers({"Content-Type": content_type, "X-Request-Id": "abc", **headers})
    return Reply(status, all_headers, json.dumps(body).encode())


@pytest.mark.parametrize(
    "method,target,response",
    [
        ("POST", "/api/v1/users", reply(201, USER)),  # no Location
        ("POST", "/api/v1/users", reply(201, {**USER, "password_hash": "x"}, Location="/api/v1/users/x")),
        ("POST", "/api/v1/users", reply(201, {**USER, "role": "root"}, Location="/api/v1/users/x")),
        ("GET", "/api/v1/users/x", reply(200, {**USER, "created_at": "yesterday"})),
        ("GET", "/api/v1/users/x", reply(500, {**PROBLEM, "status": 500}, "application/problem+json")),
        ("POST", "/api/v1/users", reply(400, PROBLEM)),  # problem with the wrong media type
        ("POST", "/api/v1/users", reply(400, {**PROBLEM, "status": 409}, "application/problem+json")),
        ("POST", "/api/v1/users", reply(400, {"error": "bad"}, "application/problem+json")),
        (
            "POST",
            "/api/v1/orders",
            reply(503, {**PROBLEM, "status": 503}, "application/problem+json"),
        ),  # no Retry-After
        ("GET", "/api/v1/nope", reply(200, {})),
        ("PUT", "/api/v1/users", reply(405, {**PROBLEM, "status": 405}, "application/problem+json")),  # no Allow
        ("GET", "/api/v1/orders", reply(200, {"items": [], "next_cursor": "not-a-cursor"})),
    ],
)
def test_the_response_check_catches_drift(spec, method, target, response):
    # The check every system test relies on must be able to fail.
    with pytest.raises(AssertionError):
        spec.check(method, target, response)


def test_the_response_check_accepts_conforming_replies(spec):
    spec.check("POST", "/api/v1/users", reply(201, USER, Location=f"/api/v1/users/{USER['id']}"))
    spec.check("POST", "/api/v1/users", reply(400, PROBLEM, "application/problem+json"))
    spec.check(
        "PUT", "/api/v1/users", reply(405, {**PROBLEM, "status": 405}, "application/problem+json", Allow="POST, GET")
    )
    spec.check("GET", "/api/v1/users?limit=2", reply(200, {"items": [USER], "next_cursor": USER["id"]}))
