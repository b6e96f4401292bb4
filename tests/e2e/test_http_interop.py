"""Interop of the Streamable HTTP transport with the real Python client (mcp 2.3.0): a legacy
session ends cleanly when the client disconnects, without the SDK's `Session termination failed`
warning (it accepts 200, 204 and 405 only)."""

from __future__ import annotations

import logging

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp_calls import admin
from stack import CALL_TIMEOUT, ERA_LEGACY, open_client

pytestmark = pytest.mark.anyio


async def test_a_legacy_session_ends_on_disconnect_without_a_client_warning(launcher, caplog):
    frontend = launcher.http_frontend()
    answers: list[tuple[str, int]] = []

    async def record(response: httpx2.Response) -> None:
        answers.append((response.request.method, response.status_code))

    caplog.set_level(logging.DEBUG, logger="mcp.client.streamable_http")
    async with httpx2.AsyncClient(event_hooks={"response": [record]}, timeout=CALL_TIMEOUT) as http:
        async with open_client(streamable_http_client(frontend.url, http_client=http), ERA_LEGACY) as client:
            assert (await admin(client, "system.health", {}))["status"] == "ok"
    deletes = [status for method, status in answers if method == "DELETE"]
    assert deletes == [204], f"the session's DELETE was answered {deletes}; all answers: {answers}"
    warnings = [r.getMessage() for r in caplog.records if "Session termination" in r.getMessage()]
    assert not warnings, warnings
