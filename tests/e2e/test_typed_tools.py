"""First-class dynamic tools through the real client: typed inputs and outputs in
tools/list, arguments checked before any container starts, results checked
against the output schema, flat arguments, self-tests that refuse broken writes
(nothing stored, nothing announced), history with rollback and restore, and the
authoring prompt with the server's live values."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import anyio.to_thread
import pytest

from docker_probe import container_ids, run_labels
from mcp_calls import (
    ListChangedCounter,
    admin,
    create_tool,
    failure_message,
    listed_tool_names,
    run_tool,
    settled_counts,
    unique_name,
)
from stack import ERA_LEGACY, ERA_MODERN

pytestmark = pytest.mark.anyio

UPPER_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
    "additionalProperties": False,
}
UPPER_OUTPUT = {"type": "object", "properties": {"upper": {"type": "string"}}, "required": ["upper"]}
UPPER_CODE = "return { upper: String(args.text).toUpperCase() };"


def typed_spec(name: str, code: str = UPPER_CODE, **extra) -> dict:
    return {
        "name": name,
        "description": "Upper-cases text.",
        "code": code,
        "inputSchema": UPPER_SCHEMA,
        "outputSchema": UPPER_OUTPUT,
        "annotations": {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True},
        "examples": [{"args": {"text": "abc"}, "expect": {"upper": "ABC"}}],
        **extra,
    }


STABLE_FOR = 1.5
SETTLE_WITHIN = 20.0


async def settled_run_containers(executor_id: str) -> set[str]:
    """This executor's run containers (running or not; warm ones included, whatever their tool
    label) once the set has not changed for a while: a warm pool refilling after an earlier call
    must not count as a container the call under test started."""
    deadline = time.monotonic() + SETTLE_WITHIN
    current = set(await anyio.to_thread.run_sync(lambda: container_ids(run_labels(executor_id))))
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < STABLE_FOR:
        assert time.monotonic() < deadline, f"the run containers of {executor_id} never settled: {current}"
        await anyio.sleep(0.2)
        seen = set(await anyio.to_thread.run_sync(lambda: container_ids(run_labels(executor_id))))
        if seen != current:
            current, stable_since = seen, time.monotonic()
    return current


async def listed(client, name: str):
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert name in tools, f"{name} is not listed"
    return tools[name]


async def test_a_typed_tool_is_listed_checked_and_answers(frontend, mode):
    _transport, era = mode
    name = unique_name("typed")
    async with frontend.connect(era) as client:
        created = await admin(client, "dynamic.tool.create", {"tool": typed_spec(name)})
        assert [e["outcome"] for e in created["examples"]] == ["passed"]
        tool = await listed(client, name)
        args_schema = tool.input_schema["properties"]["args"]
        assert args_schema["properties"] == UPPER_SCHEMA["properties"]
        assert args_schema["examples"] == [{"text": "abc"}]
        assert tool.input_schema["required"] == ["args"]
        assert tool.output_schema["properties"]["result"] == UPPER_OUTPUT
        assert tool.output_schema["required"] == ["ok", "result", "durationMs"]
        assert tool.annotations.read_only_hint is True and tool.annotations.idempotent_hint is True
        assert "Examples:" in tool.description

        assert await run_tool(client, name, {"text": "hi"}) == {"upper": "HI"}

        before = await settled_run_containers(frontend.executor_id)
        bad = await client.call_tool(name, {"args": {"text": 5, "extra": True}})
        assert bad.is_error
        body = bad.structured_content
        assert body["reason"] == "invalidArgs", body
        pointers = {error["pointer"] for error in body["errors"]}
        assert "/args/text" in pointers, body
        assert any("string" in error["expected"] for error in body["errors"]), body
        missing = await client.call_tool(name, {"args": {}})
        assert missing.is_error and missing.structured_content["reason"] == "invalidArgs"
        started = await settled_run_containers(frontend.executor_id) - before
        assert not started, f"a call with bad arguments started containers {started}"

        viewed = (await admin(client, "dynamic.tool.get", {"name": name}))["tool"]
        assert viewed["inputSchema"] == UPPER_SCHEMA and viewed["examples"][0]["expect"] == {"upper": "ABC"}


async def test_an_output_mismatch_is_reported(http_frontend):
    name = unique_name("liar")
    async with http_frontend.connect(ERA_MODERN) as client:
        spec = typed_spec(name, code="return { lower: String(args.text).toLowerCase() };")
        del spec["examples"]
        await admin(client, "dynamic.tool.create", {"tool": spec})
        result = await client.call_tool(name, {"args": {"text": "X"}})
        assert result.is_error
        body = result.structured_content
        assert body["reason"] == "outputMismatch", body
        assert body["result"] == {"lower": "x"}
        assert any(error["pointer"] == "/result" for error in body["errors"]), body
        assert "outputSchema" in result.content[0].text


async def test_flat_arguments_are_the_whole_input(http_frontend):
    name = unique_name("flat")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"x": {"$ref": "#/$defs/n"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    async with http_frontend.connect(ERA_LEGACY) as client:
        spec = {"name": name, "description": "Doubles x.", "code": "return args.x * 2;", "inputSchema": schema,
                "arguments": "flat"}
        await admin(client, "dynamic.tool.create", {"tool": spec})
        tool = await listed(client, name)
        assert tool.input_schema == schema, "a flat tool's schema is listed as written"
        answer = await client.call_tool(name, {"x": 21})
        assert not answer.is_error and answer.structured_content["result"] == 42
        refused = await client.call_tool(name, {"x": "21"})
        assert refused.is_error and refused.structured_content["errors"][0]["pointer"] == "/x"


async def test_examples_refuse_broken_writes_and_nothing_is_stored_or_announced(launcher):
    services = launcher.start_services()
    http = launcher.http_frontend(services)
    good, broken = unique_name("proven"), unique_name("broken")
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(http.connect(ERA_MODERN))
        legacy = ListChangedCounter("http-legacy")
        modern = ListChangedCounter("http-2026-07-28")
        await stack.enter_async_context(http.connect(ERA_LEGACY, message_handler=legacy))
        listener = await stack.enter_async_context(http.connect(ERA_MODERN, message_handler=modern))
        await stack.enter_async_context(listener.listen(tools_list_changed=True))
        await admin(writer, "dynamic.tool.create", {"tool": typed_spec(good)})
        await settled_counts([legacy, modern], at_least=1)
        legacy.count = modern.count = 0

        failing = typed_spec(broken, code="return { upper: String(args.text) };")
        message = await failure_message(writer, "dynamic.tool.create", {"tool": failing})
        assert "was refused" in message and "examples[0]: unexpectedResult" in message, message
        assert broken not in await listed_tool_names(writer)
        assert broken in await failure_message(writer, "dynamic.tool.get", {"name": broken})

        patch = {"code": "throw new Error('nope');"}
        thrown = await writer.call_tool("dynamic.tool.update", {"name": good, "patch": patch})
        assert thrown.is_error and thrown.structured_content["examples"][0]["outcome"] == "threw"
        current = (await admin(writer, "dynamic.tool.get", {"name": good}))["tool"]
        assert current["revision"] == 1 and current["code"] == UPPER_CODE

        # One real write afterwards: its notification is the only one anybody got.
        await admin(writer, "dynamic.tool.update", {"name": good, "patch": {"description": "Still upper-cases."}})
        counts = await settled_counts([legacy, modern], at_least=1)
        assert counts == {"http-legacy": 1, "http-2026-07-28": 1}, f"refused writes were announced: {counts}"


async def test_history_rollback_and_restore(frontend, mode):
    _transport, era = mode
    name = unique_name("versioned")
    async with frontend.connect(era) as client:
        await create_tool(client, name)
        await admin(client, "dynamic.tool.update", {"name": name, "patch": {"code": "return 'broken';"}})
        kept = await admin(client, "dynamic.tool.history", {"name": name})
        assert [(r["revision"], r["kind"]) for r in kept["revisions"]] == [(2, "updated"), (1, "created")]
        assert kept["revisions"][0]["changedFields"] == ["code"] and kept["revisions"][0]["actor"]
        first = (await admin(client, "dynamic.tool.get", {"name": name, "revision": 1}))["tool"]
        assert first["revision"] == 1 and "toUpperCase" in first["code"]

        rolled = await admin(client, "dynamic.tool.rollback", {"name": name, "revision": 1, "expectedRevision": 2})
        assert rolled["tool"]["revision"] == 3
        assert await run_tool(client, name, {"text": "back"}) == {"upper": "BACK"}
        stale_call = {"name": name, "revision": 2, "expectedRevision": 2}
        stale = await failure_message(client, "dynamic.tool.rollback", stale_call)
        assert "expectedRevision is 2" in stale and "current revision is 3" in stale

        await admin(client, "dynamic.tool.delete", {"name": name})
        deleted = await admin(client, "dynamic.tool.history", {"name": name})
        assert deleted["deleted"]["revision"] == 3
        restored = await admin(client, "dynamic.tool.restore", {"name": name})
        assert restored["tool"]["revision"] == 4
        assert name in await listed_tool_names(client)
        assert await run_tool(client, name, {"text": "again"}) == {"upper": "AGAIN"}


async def test_a_retried_create_with_its_key_gets_the_first_answer(http_frontend):
    name = unique_name("keyed")
    async with http_frontend.connect(ERA_MODERN) as client:
        call = {"tool": {"name": name, "description": "d", "code": "return 1;"}, "idempotencyKey": f"k-{name}"}
        first = await admin(client, "dynamic.tool.create", call)
        again = await admin(client, "dynamic.tool.create", call)
        assert again["replayed"] is True and again["tool"]["revision"] == first["tool"]["revision"] == 1


async def test_dynamic_tool_test_runs_without_storing(http_frontend):
    name = unique_name("draft")
    async with http_frontend.connect(ERA_MODERN) as client:
        ran = await admin(client, "dynamic.tool.test", {"tool": typed_spec(name), "args": {"text": "x"}})
        assert ran["result"] == {"upper": "X"}
        examples = await admin(client, "dynamic.tool.test", {"tool": typed_spec(name)})
        assert examples["examples"][0]["outcome"] == "passed"
        assert name not in await listed_tool_names(client)


def frontend_with(launcher, transport: str, settings: dict[str, str]):
    """A frontend of its own whose local services run with `settings`."""
    if transport == "http":
        return launcher.http_frontend(settings=settings)
    frontend = launcher.stdio_frontend()
    frontend.env.update(settings)
    return frontend


async def test_the_authoring_prompt_is_listed_and_rendered_with_live_values(launcher, mode):
    transport, era = mode
    settings = {"MCP_SANDBOX_MAX_TIMEOUT_MS": "45000", "MCP_SANDBOX_DEFAULT_TIMEOUT_MS": "7000"}
    async with frontend_with(launcher, transport, settings).connect(era) as client:
        prompts = (await client.list_prompts()).prompts
        author = next(p for p in prompts if p.name == "dynamic.tool.author")
        assert [a.name for a in author.arguments] == ["goal"] and author.arguments[0].required
        rendered = await client.get_prompt("dynamic.tool.author", {"goal": "convert celsius to fahrenheit"})
        text = rendered.messages[0].content.text
        assert "convert celsius to fahrenheit" in text
        assert "1000-45000 ms" in text and "default 7000 ms" in text, text[:2000]
        assert "dynamic-mcp-sandbox:latest" in text and '"examples": [' in text


async def test_the_built_in_schemas_state_the_executors_limits(launcher, mode):
    """The built-ins' input schemas are derived from their Rust types and carry the executor's
    configured limits, not common's ceilings; the refusal of a longer timeout names the same value."""
    transport, era = mode
    settings = {"MCP_SANDBOX_MAX_TIMEOUT_MS": "45000", "MCP_SANDBOX_MAX_DEPENDENCIES": "5"}
    async with frontend_with(launcher, transport, settings).connect(era) as client:
        tools = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        ephemeral = tools["run_js_ephemeral"]["properties"]
        assert ephemeral["timeoutMs"]["maximum"] == 45000, ephemeral["timeoutMs"]
        assert "1000-45000 ms on this server" in ephemeral["timeoutMs"]["description"]
        assert ephemeral["dependencies"]["maxItems"] == 5
        created = tools["dynamic.tool.create"]["properties"]["tool"]
        assert created["properties"]["timeoutMs"]["maximum"] == 45000
        assert created["required"] == ["name", "description", "code"] and created["additionalProperties"] is False
        assert tools["sandbox.exec"]["properties"]["timeoutMs"]["maximum"] == 45000
        for name, schema in tools.items():
            if name.startswith(("dynamic.tool.", "sandbox.", "system.")) or name == "run_js_ephemeral":
                assert schema["additionalProperties"] is False, name
                assert "120000" not in str(schema), f"{name} still states common's ceiling"
                assert ("adminToken" in schema["properties"]) == (not name.startswith("system.")), name
        refusal = await failure_message(client, "run_js_ephemeral", {"code": "return 1;", "timeoutMs": 60000})
        assert "45000" in refusal, refusal
        # The admin token argument is taken by the call pipeline, never refused as unknown.
        assert await run_js(client, {"code": "return 2;", "adminToken": "unused"}) == 2


async def run_js(client, arguments: dict) -> object:
    result = await admin(client, "run_js_ephemeral", arguments)
    return result["result"]
