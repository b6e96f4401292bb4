"""Tools that speak more than JSON: MCP content returned through the harness's `mcp` helpers, and
progress reported with `progress()` reaching the caller as notifications/progress — for dynamic tools
in every transport and protocol era, and for run_js_ephemeral and sandbox.run_js. Also: a plain JSON
return keeps its shape, bad content is refused with what to fix, progress is coalesced but never loses
its last report, and progress extends no timeout. The conformance suite's fixture tools are written
here as dynamic tools and checked as the suite checks them."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import types

from conformance_fixtures import FIXTURES, RED_PIXEL_PNG, TINY_WAV_JS
from mcp_calls import admin, create_tool, text_of, unique_name
from stack import ERA_LEGACY, ERA_MODERN

pytestmark = pytest.mark.anyio

EVERY_KIND_OF_CONTENT = (
    TINY_WAV_JS
    + f"""
return mcp.content([
  "a chart of " + args.what,
  mcp.image("{RED_PIXEL_PNG}", "image/png", {{ annotations: {{ audience: ["user"], priority: 0.9 }} }}),
  mcp.audio(wav, "audio/wav"),
  mcp.resourceLink("file:///reports/q3.csv", "q3.csv", {{ mimeType: "text/csv", size: 1234, description: "raw data" }}),
  mcp.resource({{ uri: "test://notes", mimeType: "text/markdown", text: "# Notes" }}),
  mcp.resource({{ uri: "test://blob", mimeType: "application/octet-stream", blob: Buffer.from([0, 1, 2]) }}),
]);
"""
)

STEPS_WITH_PROGRESS = """
for (let step = 1; step <= 4; step++) {
  await new Promise((r) => setTimeout(r, 80));
  await progress(step, 4, `step ${step} of 4`);
}
return { steps: 4 };
"""


class ProgressLog:
    """A progress callback that keeps every notification."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))

    @property
    def values(self) -> list[float]:
        return [progress for progress, _, _ in self.seen]


def assert_every_kind_of_content(result: types.CallToolResult) -> None:
    assert not result.is_error, text_of(result)
    assert result.structured_content is None, "a content result has no structuredContent"
    text, image, audio, link, notes, blob = result.content
    assert isinstance(text, types.TextContent) and text.text == "a chart of sales"
    assert isinstance(image, types.ImageContent) and image.mime_type == "image/png"
    assert base64.b64decode(image.data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.annotations is not None and image.annotations.audience == ["user"]
    assert isinstance(audio, types.AudioContent) and audio.mime_type == "audio/wav"
    assert base64.b64decode(audio.data)[:4] == b"RIFF"
    assert isinstance(link, types.ResourceLink), link
    link_fields = (str(link.uri), link.name, link.mime_type, link.size)
    assert link_fields == ("file:///reports/q3.csv", "q3.csv", "text/csv", 1234), link
    assert isinstance(notes, types.EmbeddedResource) and isinstance(notes.resource, types.TextResourceContents)
    assert (str(notes.resource.uri), notes.resource.text) == ("test://notes", "# Notes")
    assert isinstance(blob.resource, types.BlobResourceContents)
    assert base64.b64decode(blob.resource.blob) == b"\x00\x01\x02"
    run = (result.meta or {}).get("dynamic-mcp/run")
    assert isinstance(run, dict) and isinstance(run.get("durationMs"), int), result.meta


def assert_increasing_progress(log: ProgressLog, reports: int) -> None:
    assert len(log.seen) >= reports, f"expected {reports} progress notifications, got {log.seen}"
    assert log.values == sorted(set(log.values)), f"progress did not increase: {log.values}"
    assert log.seen[-1] == (4, 4, "step 4 of 4"), log.seen


async def test_a_dynamic_tool_returns_every_kind_of_content(frontend, mode):
    _transport, era = mode
    name = unique_name("content")
    async with frontend.connect(era) as client:
        await create_tool(client, name, EVERY_KIND_OF_CONTENT)
        assert_every_kind_of_content(await client.call_tool(name, {"args": {"what": "sales"}}))


async def test_a_dynamic_tools_progress_reaches_the_caller(frontend, mode):
    _transport, era = mode
    name = unique_name("progress")
    async with frontend.connect(era) as client:
        await create_tool(client, name, STEPS_WITH_PROGRESS)
        log = ProgressLog()
        result = await client.call_tool(name, {"args": {}}, progress_callback=log)
        assert not result.is_error, text_of(result)
        assert result.structured_content["result"] == {"steps": 4}
        assert_increasing_progress(log, 4)
        # Without a progress token the same code runs the same, and nothing is sent.
        result = await client.call_tool(name, {"args": {}})
        assert result.structured_content["result"] == {"steps": 4}


@pytest.mark.parametrize("era", [ERA_MODERN, ERA_LEGACY])
async def test_code_passed_with_a_call_returns_content_and_reports_progress(http_frontend, era):
    async with http_frontend.connect(era) as client:
        ephemeral = {"code": EVERY_KIND_OF_CONTENT, "args": {"what": "sales"}}
        assert_every_kind_of_content(await client.call_tool("run_js_ephemeral", ephemeral))
        log = ProgressLog()
        result = await client.call_tool("run_js_ephemeral", {"code": STEPS_WITH_PROGRESS}, progress_callback=log)
        assert not result.is_error, text_of(result)
        assert_increasing_progress(log, 4)

        session = (await admin(client, "sandbox.initialize", {}))["sessionId"]
        in_session = {"sessionId": session, "code": EVERY_KIND_OF_CONTENT, "args": {"what": "sales"}}
        assert_every_kind_of_content(await client.call_tool("sandbox.run_js", in_session))
        log = ProgressLog()
        steps = {"sessionId": session, "code": STEPS_WITH_PROGRESS}
        result = await client.call_tool("sandbox.run_js", steps, progress_callback=log)
        assert not result.is_error, text_of(result)
        assert_increasing_progress(log, 4)
        await admin(client, "sandbox.stop", {"sessionId": session})


async def test_a_plain_json_return_keeps_its_shape(http_frontend):
    # An object that merely looks like a content block is JSON, as it always was.
    code = 'return { type: "text", text: "not content" };'
    async with http_frontend.connect(ERA_MODERN) as client:
        result = await client.call_tool("run_js_ephemeral", {"code": code})
        assert not result.is_error, text_of(result)
        assert result.structured_content == {
            "ok": True,
            "result": {"type": "text", "text": "not content"},
            "durationMs": result.structured_content["durationMs"],
        }
        assert [block.type for block in result.content] == ["text"]
        assert '"not content"' in result.content[0].text


BAD_CONTENT: list[tuple[str, str, str]] = [
    ("helper", 'return mcp.image("not base64!", "image/png");', "mcp.image: data is not base64"),
    ("helper", 'return mcp.image("AAAA", "text/plain");', 'mimeType "text/plain" is not an image/* MIME type'),
    ("helper", "return mcp.content([{ type: 'text', text: 'made by hand' }]);", "mcp.content: item 0 is not a block"),
    ("helper", 'return mcp.resource({ uri: "no-scheme", text: "x" });', 'uri "no-scheme" has no scheme'),
    # Past the helpers, straight onto the harness's report channel: the executor's check refuses it.
    (
        "report",
        """const fs = await import("node:fs");
const body = JSON.stringify([{ type: "image", data: "AAAA", mimeType: "image/png" }, { type: "video", data: "AAAA" }]);
fs.writeSync(4, JSON.stringify({ kind: "result", format: "content", bytes: Buffer.byteLength(body) }) + "\\n" + body);
await new Promise((r) => setTimeout(r, 5000));""",
        "content[1] (video): unknown variant `video`",
    ),
]


@pytest.mark.parametrize(
    ("where", "code", "expected"), BAD_CONTENT, ids=[f"{where}-{i}" for i, (where, _, _) in enumerate(BAD_CONTENT)]
)
async def test_bad_content_is_refused_with_what_to_fix(http_frontend, where, code, expected):
    async with http_frontend.connect(ERA_MODERN) as client:
        result = await client.call_tool("run_js_ephemeral", {"code": code})
        assert result.is_error, f"bad content was accepted: {result}"
        message = text_of(result)
        assert expected in message, message
        wanted = "badResult" if where == "report" else "threw"
        assert result.structured_content["reason"] == wanted, result.structured_content


async def test_content_over_the_result_cap_is_too_large(launcher):
    frontend = launcher.http_frontend(settings={"MCP_SANDBOX_MAX_OUTPUT_BYTES": "1000"})
    code = 'return mcp.image(Buffer.alloc(4000, 7), "image/png");'
    async with frontend.connect(ERA_MODERN) as client:
        result = await client.call_tool("run_js_ephemeral", {"code": code})
        assert result.is_error and "result too large (over 4000 bytes)" in text_of(result), text_of(result)


async def test_a_progress_flood_is_coalesced_and_its_last_report_arrives(http_frontend):
    code = """
const started = Date.now();
let i = 0;
while (Date.now() - started < 1000) { i++; await progress(i, undefined, `report ${i}`); }
await progress(i + 1, i + 1, "done");
return i;
"""
    async with http_frontend.connect(ERA_MODERN) as client:
        log = ProgressLog()
        result = await client.call_tool("run_js_ephemeral", {"code": code}, progress_callback=log)
        assert not result.is_error, text_of(result)
        sent = result.structured_content["result"]
        assert sent > 1000, f"the code reported too little to flood anything: {sent}"
        # A burst of 10, then one each 50 ms: about 30 in a second, never thousands.
        assert 3 <= len(log.seen) <= 60, f"{len(log.seen)} notifications for {sent} reports"
        assert log.values == sorted(set(log.values)), log.values
        assert log.seen[-1] == (sent + 1, sent + 1, "done"), log.seen[-3:]


async def test_non_increasing_reports_are_not_sent_and_bad_ones_throw(http_frontend):
    code = """
await progress(5, 10);
await progress(5, 10, "same value");
await progress(3, 10, "going back");
await progress(7, 10);
try { await progress("8"); return "accepted a string"; } catch (e) { return e.message; }
"""
    async with http_frontend.connect(ERA_MODERN) as client:
        log = ProgressLog()
        result = await client.call_tool("run_js_ephemeral", {"code": code}, progress_callback=log)
        assert result.structured_content["result"].startswith("progress(done, total, message): done must be"), result
        assert log.values == [5, 7], log.seen


async def test_progress_extends_no_timeout(http_frontend):
    code = "let i = 0;\nwhile (true) { await progress(++i); await new Promise((r) => setTimeout(r, 100)); }"
    async with http_frontend.connect(ERA_MODERN) as client:
        log = ProgressLog()
        started = time.monotonic()
        result = await client.call_tool("run_js_ephemeral", {"code": code, "timeoutMs": 1500}, progress_callback=log)
        elapsed = time.monotonic() - started
        assert result.is_error and result.structured_content["reason"] == "timedOut", text_of(result)
        assert elapsed < 6, f"a 1500 ms timeout ended after {elapsed:.1f} s"
        assert len(log.seen) >= 5, log.seen


def check_like_the_suite(name: str, result: types.CallToolResult, progress: list[Any]) -> None:
    """The checks of the suite's tools-call-* scenarios for `name`."""
    content = result.content
    kinds = [block.type for block in content]
    if name == "test_error_handling":
        assert result.is_error and content and content[0].text, result
        return
    assert not result.is_error and content, f"{name}: {result}"
    if name == "test_simple_text":
        assert any(block.type == "text" and block.text for block in content), result
    elif name == "test_image_content":
        image = next(block for block in content if block.type == "image")
        assert image.data and image.mime_type, image
    elif name == "test_audio_content":
        audio = next(block for block in content if block.type == "audio")
        assert audio.data and audio.mime_type == "audio/wav", audio
    elif name == "test_embedded_resource":
        resource = next(block for block in content if block.type == "resource").resource
        assert resource.uri and resource.mime_type and getattr(resource, "text", None), resource
    elif name == "test_multiple_content_types":
        assert len(content) >= 2 and {"text", "image", "resource"} <= set(kinds), kinds
    elif name == "test_tool_with_progress":
        values = [p for p, _, _ in progress]
        assert len(values) >= 3 and values[0] <= values[1] <= values[2], progress
    else:
        raise AssertionError(f"no check for {name}")


async def test_the_conformance_suites_fixture_tools_can_be_written_as_dynamic_tools(frontend, mode):
    _transport, era = mode
    async with frontend.connect(era) as client:
        for name, code in FIXTURES.items():
            await create_tool(client, name, code)
        for name in FIXTURES:
            log = ProgressLog()
            # The suite sends no `args`; progress only where it asks for it.
            callback = log if name == "test_tool_with_progress" else None
            result = await client.call_tool(name, {}, progress_callback=callback)
            check_like_the_suite(name, result, log.seen)


def readme_chart_code() -> str:
    """The README's example tool, as printed there."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Images, other content, and progress", 1)[1]
    return section.split("```js\n", 1)[1].split("```", 1)[0]


async def test_the_readme_chart_tool_returns_an_image_and_reports_progress(http_frontend):
    async with http_frontend.connect(ERA_MODERN) as client:
        name = unique_name("chart")
        await create_tool(client, name, readme_chart_code())
        log = ProgressLog()
        result = await client.call_tool(name, {"args": {"values": [1, 9, 4, 6]}}, progress_callback=log)
        assert not result.is_error, text_of(result)
        caption, image = result.content
        assert caption.text == "A bar chart of 1, 9, 4, 6"
        png = base64.b64decode(image.data)
        assert image.mime_type == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n", image
        assert int.from_bytes(png[16:20], "big") == 40, "the chart is 10 pixels per value wide"
        assert log.seen and log.seen[-1] == (40, 40, "row 40 of 40"), log.seen
