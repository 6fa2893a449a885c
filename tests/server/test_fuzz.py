"""Fuzzing the API from its own OpenAPI document (schemathesis): whatever a client sends, the
server never answers 5xx, and every error is a problem document."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from schemathesis.openapi import from_url

from conftest import Server


def test_no_server_errors_and_every_error_is_a_problem(server: Server) -> None:
    schema = from_url(f"{server.url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15
    calls = 0

    for op in operations:
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers=headers, timeout=60)
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                response.text)
            if response.status_code >= 400:
                ct = response.headers.get("content-type")
                assert (ct[0] if isinstance(ct, list) else ct) == "application/problem+json"
                body = response.json()
                assert body["status"] == response.status_code and body["detail"]

        check()
    assert calls >= len(operations)
