"""Schema-driven fuzzing of the REST API with schemathesis, against a live gateway process.

Every operation of JupyterHub's OpenAPI spec (``tests/data/jupyterhub-rest-api.yml``, 6.1.1) that
this API implements is sent schema-valid ("positive") and schema-violating ("negative") requests,
a bounded number of each, with an admin service's token. Every answer must come within a timeout,
never be a 5xx, and match the spec's response schema, as corrected below.

Deliberate departures from the spec, all listed in §12 of the JupyterHub behaviour notes or seen
on a live JupyterHub 6.1.1 (the contract is the real hub, not its spec):

- The spec's models omit ``null``: a user's ``server``, ``pending``, ``last_activity``,
  ``user_info`` and ``auth_state``; a server's ``pending``, ``started``, ``last_activity``,
  ``user_options``; a token's ``expires_at``, ``last_activity``, ``note`` (all null in real answers).
  ``SPEC_CORRECTIONS`` makes them nullable, and adds the ``check``/``rename`` pending states.
- ``GET /services`` answers a dict keyed by name (the spec says a list): corrected.
- ``status_code_conformance`` is not run: the spec lists only the success code of most operations,
  while JupyterHub answers 400/403/404/409/413 with the JSON error body (checked by other tests).
- ``positive_data_acceptance`` is not run: spec-valid requests name random users, groups and tokens,
  which rightly get 404/409; and JupyterHub's ``Invalid JSON keys`` refuses extra properties that
  the spec (no ``additionalProperties: false``) allows.
- ``negative_data_rejection`` is not run where JupyterHub accepts what the spec calls invalid:
  query flags like ``include_stopped_servers`` take any value, a body the spec marks required may
  be empty (``POST /users/{name}``), and numbers are accepted in strings for offset/limit.
- ``POST /shutdown`` gets negative requests with a body only: a valid one stops the gateway (its
  202 and the process exit are tested in test_api_hub).

Operations served elsewhere and not fuzzed here: servers (``*-user-server*``, owned by the server
manager), shares and share codes (``*-shared*``, ``*-shares-*``, ``*-share-code*``), OAuth
(``get-oauth-authorize``, ``post-oauth-token``) and the deprecated ``get-auth-cookie``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from tests.helpers.hub import GatewayProcess
from tests.helpers.paths import DATA

SPEC = DATA / "jupyterhub-rest-api.yml"
TOKEN = "fuzz-admin-token-0001"
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "25"))  # per operation and mode; raise it for a deep run
REQUEST_TIMEOUT = 10  # seconds: a slower answer counts as a hang

NOT_HERE = ("server", "shared", "shares", "share-code", "oauth", "get-auth-cookie")
# Operations where the spec calls invalid what JupyterHub accepts (see the module docstring).
LENIENT = {"get-users", "get-user", "post-user", "get-groups", "get-services", "get-proxy", "patch-proxy",
           "post-user-tokens", "post-user-activity", "put-group-properties"}
NEGATIVE_ONLY = {"post-shutdown"}


def nullable(schema: dict[str, Any], *fields: str) -> None:
    for field in fields:
        prop = schema["properties"][field]
        prop.pop("type", None)
        kinds = prop.pop("anyOf", None) or []
        base = {k: prop.pop(k) for k in ("enum", "format") if k in prop}
        original = schema["properties"][field]
        original["anyOf"] = kinds or [{"type": _type_of(field, schema), **base}]
        original["anyOf"].append({"type": "null"})


def _type_of(field: str, schema: dict[str, Any]) -> str:
    return {"user_info": "object", "auth_state": "object", "user_options": "object"}.get(field, "string")


def _plain(value: Any) -> Any:
    """YAML reads unquoted example timestamps as datetimes; JSON Schema wants strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat().replace("+00:00", "Z")
    return value


def corrected_spec(*, narrow: bool = False) -> dict[str, Any]:
    """The 6.1.1 spec with the corrections listed in the module docstring (``narrow``: see narrow_names)."""
    spec = _plain(yaml.safe_load(SPEC.read_text()))
    schemas = spec["components"]["schemas"]
    schemas["User"]["properties"]["pending"]["enum"] = ["spawn", "stop", "check", "rename"]
    schemas["Server"]["properties"]["pending"]["enum"] = ["spawn", "stop", "check", "rename"]
    nullable(schemas["User"], "server", "pending", "last_activity", "user_info", "auth_state")
    nullable(schemas["Server"], "pending", "started", "last_activity", "user_options")
    for name in ("Token", "NewToken"):
        present = [f for f in ("expires_at", "last_activity", "note") if f in schemas[name]["properties"]]
        nullable(schemas[name], *present)
    services = spec["paths"]["/services"]["get"]["responses"]
    services[200]["content"]["application/json"]["schema"] = {
        "type": "object", "additionalProperties": {"$ref": "#/components/schemas/Service"}}
    for name in ("paginationOffset", "paginationLimit"):  # "number" in the spec; JupyterHub parses int()
        spec["components"]["parameters"][name]["schema"] = {"type": "integer", "minimum": 0}
    close_bodies(spec)
    if narrow:
        narrow_names(spec)
    return spec


# For schema-valid requests, names come from a tiny alphabet, so that they hit resources that exist
# (seeded, or created by earlier operations) and reach success paths, not only 404s. Schema-violating
# requests are generated from the spec's own (unnarrowed) parameters: a name outside the tiny
# alphabet is no violation of the real contract.
USER_NAME = {"type": "string", "pattern": "^[abc]{1,2}$"}
GROUP_NAME = {"type": "string", "pattern": "^g[abc]?$"}
TOKEN_ID = {"type": "string", "pattern": "^a[1-9]$"}
CLOSED_BODIES = {"/users": "post", "/users/{name}": "patch", "/users/{name}/activity": "post",
                 "/users/{name}/tokens": "post", "/groups/{name}/users": "*", "/shutdown": "post"}


def close_bodies(spec: dict[str, Any]) -> None:
    """Request bodies closed where JupyterHub refuses unknown keys (400 "Invalid JSON keys")."""
    for path, method in CLOSED_BODIES.items():
        for name, operation in spec["paths"][path].items():
            if method in (name, "*") and isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"] = False


def narrow_names(spec: dict[str, Any]) -> None:
    """Tiny name alphabets for users, groups, services and token ids (see above)."""
    parameters = spec["components"]["parameters"]
    parameters["userName"]["schema"] = dict(USER_NAME)
    parameters["groupName"]["schema"] = dict(GROUP_NAME)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "token_id":
                    parameter["schema"] = dict(TOKEN_ID)
                if path.startswith("/services/") and parameter.get("name") == "name":
                    parameter["schema"] = {"type": "string", "pattern": "^s[abc]?$"}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is None or "properties" not in body:
                continue
            for key in ("usernames", "users"):
                if key in body["properties"]:
                    body["properties"][key]["items"] = dict(USER_NAME)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> GatewayProcess:
    workdir = tmp_path_factory.mktemp("fuzz")
    proc = GatewayProcess(workdir, f'c.JupyterHub.services = [{{"name": "fuzzer", "admin": True, "api_token": "{TOKEN}"}}]\n'
                                   'c.JupyterHub.allow_named_servers = True\n')
    proc.start()
    try:
        asyncio.run(proc.wait_ready())
        seed(proc.url + "/hub/api")
        yield proc
    finally:
        proc.stop()


def seed(api: str) -> None:
    """Users, groups, tokens and a runtime service with names from the tiny alphabets."""
    with requests.Session() as s:
        s.headers["Authorization"] = f"token {TOKEN}"
        users = [a + b for a in "abc" for b in ("", "a", "b", "c")]
        assert s.post(f"{api}/users", json={"usernames": users}, timeout=10).status_code == 201
        for group in ("g", "ga", "gb", "gc"):
            assert s.post(f"{api}/groups/{group}", json={"users": users[:3]}, timeout=10).status_code == 201
        for user in users[:3]:
            for _ in range(3):
                assert s.post(f"{api}/users/{user}/tokens", json={}, timeout=10).status_code == 201
        assert s.post(f"{api}/services/sa", json={"url": "http://127.0.0.1:1"}, timeout=10).status_code == 201


def operations() -> list[str]:
    """Implemented operations, deleting ones last and shutdown at the very end."""
    found = []
    for result in schemathesis.openapi.from_dict(corrected_spec()).get_all_operations():
        operation = result.ok()
        op_id = operation.definition.raw["operationId"]
        if not any(part in op_id for part in NOT_HERE):
            found.append((op_id == "post-shutdown", operation.method.upper() == "DELETE", op_id))
    return [op_id for *_, op_id in sorted(found)]


def sends_a_body(case) -> bool:
    """Schemathesis may make a "negative" case of a request with no body at all, which for
    ``POST /shutdown`` is a valid request that ends the gateway: only cases with a body run."""
    return case.body is not NOT_SET and case.body is not None


def checks_for(operation_id: str, mode: GenerationMode) -> list:
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    if mode == GenerationMode.NEGATIVE and operation_id not in LENIENT:
        checks.append(negative_data_rejection)
    return checks


@pytest.mark.parametrize("operation_id", [pytest.param(i, id=i) for i in operations()])
def test_fuzz_operation(gateway, operation_id):
    modes = [GenerationMode.NEGATIVE] if operation_id in NEGATIVE_ONLY else list(GenerationMode)
    failures: list[str] = []
    session = requests.Session()
    for mode in modes:
        schema = schemathesis.openapi.from_dict(corrected_spec(narrow=mode == GenerationMode.POSITIVE))
        operation = next(op.ok() for op in schema.get_all_operations()
                         if op.ok().definition.raw["operationId"] == operation_id)

        strategy = operation.as_strategy(generation_mode=mode)
        if operation_id in NEGATIVE_ONLY:
            strategy = strategy.filter(sends_a_body)
        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate], derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            started = time.monotonic()
            try:
                response = case.call(base_url=gateway.url + "/hub/api", session=session,
                                     headers={"Authorization": f"token {TOKEN}"}, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as e:
                failures.append(f"{mode.value}: no answer within {REQUEST_TIMEOUT}s ({e!r}) for {case.as_curl_command()}")
                return
            try:
                case.validate_response(response, checks=checks_for(operation_id, mode))
            except (Failure, FailureGroup) as e:
                failures.append(f"{mode.value} {response.status_code} in {time.monotonic() - started:.2f}s: "
                                f"{str(e)[:1500]}")

        try:
            fuzz()
        except Unsatisfiable:
            pass  # nothing to vary (e.g. no parameters to break in negative mode)
    assert gateway.proc.poll() is None, "the gateway died:\n" + gateway.log()[-3000:]
    assert not failures, f"{len(failures)} failures, first ones:\n" + "\n\n".join(failures[:3])
