"""HTTP clients for the system tests that check every response against docs/api/openapi.yaml.

`Spec.check()` is the single place a response is validated: operations the spec describes go through openapi-core
(status documented, headers, content type, body schema); responses the HTTP layer gives for any route (404 for an
unknown route, 405, 413, 431) are checked against the spec's shared `components.responses`. Every problem
document must also say the same status as the HTTP status line. `ApiClient` calls it on every response, so a test
cannot forget to.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound, ServerNotFound
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "docs" / "api" / "openapi.yaml"

# The spec's servers: requests are matched against these, whatever port the test instance listens on.
CANONICAL_API = "http://127.0.0.1:8081"
CANONICAL_ADMIN = "http://127.0.0.1:9081"

PROBLEM_JSON = "application/problem+json"

# Statuses the HTTP layer may give on any route (see the spec's info.description), with the component response
# (components.responses) that describes them.
GENERIC_RESPONSES = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    431: "HeaderFieldsTooLarge",
}


@dataclass
class _Request:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _Response:
    status_code: int
    headers: Headers
    data: bytes
    content_type: str


@dataclass
class Reply:
    """A response as the tests see it, whichever client got it."""

    status: int
    headers: Headers
    body: bytes
    method: str = ""
    target: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"<{self.method} {self.target} -> {self.status} {self.content_type} {self.body[:300]!r}>"


class Spec:
    def __init__(self, path: Path = SPEC_PATH):
        self.document = yaml.safe_load(path.read_text(encoding="utf-8"))
        # The document itself is validated by test_openapi.py; validating it again here would only cost seconds.
        config = Config(
            spec_validator_cls=None, extra_media_type_deserializers={PROBLEM_JSON: lambda value, **_: json.loads(value)}
        )
        self.openapi = OpenAPI.from_file_path(str(path), config=config)
        self.checked = 0
        self._resolver = {"components": self.document["components"]}

    def schema(self, name: str) -> dict:
        """A component schema as a standalone JSON Schema (refs resolved against the spec)."""
        return {"$ref": f"#/components/schemas/{name}", **self._resolver}

    def validate_schema(self, name: str, value: Any) -> None:
        jsonschema.validate(value, self.schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    def check(self, method: str, target: str, reply: Reply, *, admin: bool = False) -> None:
        """Raises AssertionError when `reply` does not conform to the spec for `method target`."""
        self.checked += 1
        split = urlsplit(target)
        context = f"{method} {target} -> {reply.status} ({reply.content_type}): {reply.body[:500]!r}"
        if reply.content_type.startswith(PROBLEM_JSON) or reply.status >= 400:
            self._check_problem(reply, context)
        request = _Request(
            host_url=CANONICAL_ADMIN if admin else CANONICAL_API,
            path=split.path,
            method=method.lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(
                    [(k, v) for k, vs in parse_qs(split.query, keep_blank_values=True).items() for v in vs]
                ),
                header=Headers(),
                cookie=ImmutableMultiDict(),
            ),
            body=None,
            content_type="",
        )
        response = _Response(
            status_code=reply.status, headers=reply.headers, data=reply.body, content_type=reply.content_type
        )
        try:
            self.openapi.validate_response(request, response)
            return
        except (PathNotFound, OperationNotFound, ServerNotFound, ResponseNotFound):
            # No such route on this listener (404), no such method (405), or a status the operation does not list
            # (431 on any route, say): the HTTP layer's answer, checked against the shared responses.
            pass
        except Exception as e:  # noqa: BLE001 - openapi-core has many error types; all mean "does not conform"
            raise AssertionError(
                f"response does not conform to the OpenAPI spec: {type(e).__name__}: {e} "
                f"{getattr(e, '__cause__', '') or ''}\n{context}"
            ) from None
        self._check_generic(reply, context)

    def check_refusal(self, reply: Reply) -> None:
        """A refusal the HTTP layer sends before a request was read whole (400 malformed, 413, 431)."""
        context = f"refusal -> {reply.status} ({reply.content_type}): {reply.body[:500]!r}"
        assert reply.status in (400, 413, 431), context
        self._check_problem(reply, context)

    def _check_problem(self, reply: Reply, context: str) -> None:
        assert reply.status >= 400, f"a problem document with a success status\n{context}"
        assert reply.content_type == PROBLEM_JSON, f"an error must be {PROBLEM_JSON}\n{context}"
        try:
            body = reply.json()
        except ValueError:
            raise AssertionError(f"problem body is not JSON\n{context}") from None
        try:
            self.validate_schema("Problem", body)
        except jsonschema.ValidationError as e:
            raise AssertionError(f"problem body does not match the Problem schema: {e.message}\n{context}") from None
        assert body["status"] == reply.status, f"problem status {body['status']} != HTTP status\n{context}"

    def _check_generic(self, reply: Reply, context: str) -> None:
        assert reply.status in GENERIC_RESPONSES, f"undocumented status for this route\n{context}"
        name = GENERIC_RESPONSES[reply.status]
        component = self.document["components"]["responses"][name]
        for header, spec in component.get("headers", {}).items():
            spec = self._deref(spec)
            value = reply.header(header)
            assert value is not None or not spec.get("required"), f"missing header {header}\n{context}"
            if value is not None:
                jsonschema.validate(value, {**spec["schema"], **self._resolver})
        assert PROBLEM_JSON in component["content"], context

    def _deref(self, node: dict) -> dict:
        while "$ref" in node:
            parts = node["$ref"].lstrip("#/").split("/")
            node = self.document
            for part in parts:
                node = node[part]
        return node


class ApiClient:
    """A keep-alive client of one listener; every response is checked against the spec before it is returned."""

    def __init__(self, base_url: str, spec: Spec, *, admin: bool = False, token: str | None = None):
        self.base_url = base_url
        self.spec = spec
        self.admin = admin
        self.token = token
        self.session = requests.Session()

    def with_token(self, token: str | None) -> ApiClient:
        return ApiClient(self.base_url, self.spec, admin=self.admin, token=token)

    def request(
        self,
        method: str,
        target: str,
        *,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = ...,
        timeout: float = 15,
    ) -> Reply:
        all_headers = dict(headers or {})
        bearer = self.token if token is ... else token
        if bearer is not None and "Authorization" not in all_headers:
            all_headers["Authorization"] = f"Bearer {bearer}"
        if json_body is not None:
            data = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        response = self.session.request(
            method, self.base_url + target, data=data, headers=all_headers, timeout=timeout, allow_redirects=False
        )
        reply = Reply(response.status_code, Headers(list(response.headers.items())), response.content, method, target)
        self.spec.check(method, target, reply, admin=self.admin)
        return reply

    def get(self, target: str, **kw) -> Reply:
        return self.request("GET", target, **kw)

    def post(self, target: str, body: Any = None, **kw) -> Reply:
        return self.request("POST", target, json_body=body, **kw)

    def patch(self, target: str, body: Any = None, **kw) -> Reply:
        return self.request("PATCH", target, json_body=body, **kw)

    def delete(self, target: str, **kw) -> Reply:
        return self.request("DELETE", target, **kw)


def raw_exchange(port: int, payload: bytes, *, timeout: float = 10) -> tuple[Reply | None, float, bool]:
    """Sends raw bytes on a fresh connection and reads one response.

    Returns (reply or None when the server sent nothing, seconds until the reply or close, whether the server closed
    the connection after answering).
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413, 431) and close before it has read everything
        return read_reply(sock, started)


def read_reply(sock: socket.socket, started: float) -> tuple[Reply | None, float, bool]:
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None, time.monotonic() - started, True
    body = response.read()
    reply = Reply(response.status, Headers(list(response.getheaders())), body)
    elapsed = time.monotonic() - started
    closed = response.will_close
    if closed:
        try:
            sock.settimeout(2)
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = True
    return reply, elapsed, closed


# -- JSON Web Tokens written by hand, to test what the services refuse ---------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def ed25519_sign(private_key: Path, message: bytes) -> bytes:
    with tempfile.NamedTemporaryFile() as f:
        f.write(message)
        f.flush()
        result = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-inkey", str(private_key), "-rawin", "-in", f.name],
            capture_output=True,
            check=True,
            timeout=30,
        )
    assert len(result.stdout) == 64, result
    return result.stdout


def make_token(private_key: Path | None, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A compact JWS of `claims`; signed with Ed25519 when a key is given, else with an empty signature."""
    header = header or {"alg": "EdDSA", "typ": "JWT"}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = b64url(ed25519_sign(private_key, signing_input.encode())) if private_key else ""
    return f"{signing_input}.{signature}"


def claims_for(
    subject: str, role: str = "user", *, issued: int | None = None, ttl: int = 900, issuer: str = "vigie"
) -> dict[str, Any]:
    now = int(time.time()) if issued is None else issued
    return {"sub": subject, "role": role, "iss": issuer, "iat": now, "exp": now + ttl}


def order_body(*items: tuple[str, int, int]) -> dict:
    """An order request body from (sku, quantity, unit_price_cents) triples."""
    return {"items": [{"sku": sku, "quantity": q, "unit_price_cents": p} for sku, q, p in items]}
