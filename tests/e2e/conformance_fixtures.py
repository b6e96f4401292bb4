"""The fixture tools of the official MCP conformance suite (@modelcontextprotocol/conformance
0.2.0-alpha.12, pinned in tests/conformance/package.json) that dynamic tools can express, written as
dynamic tools. Each returns what the suite's scenario asks for, through the harness's `mcp` helpers
and `progress()`. test_conformance.py creates them through dynamic.tool.create before it runs the
suite; to run the suite by hand against a running server:

    python3 tests/e2e/conformance_fixtures.py http://127.0.0.1:8788/mcp [--admin-token TOKEN]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from mcp import Client

from mcp_calls import create_tool

# A 1x1 red PNG, the suite's own suggestion.
RED_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)

# A tenth of a second of silence as 8 kHz, 8-bit mono WAV, built from bytes in the tool.
TINY_WAV_JS = """
const samples = Buffer.alloc(800, 128);
const header = Buffer.alloc(44);
header.write("RIFF", 0); header.writeUInt32LE(36 + samples.length, 4); header.write("WAVE", 8);
header.write("fmt ", 12); header.writeUInt32LE(16, 16); header.writeUInt16LE(1, 20); header.writeUInt16LE(1, 22);
header.writeUInt32LE(8000, 24); header.writeUInt32LE(8000, 28);
header.writeUInt16LE(1, 32); header.writeUInt16LE(8, 34);
header.write("data", 36); header.writeUInt32LE(samples.length, 40);
const wav = Buffer.concat([header, samples]);
"""

FIXTURES: dict[str, str] = {
    "test_simple_text": 'return mcp.text("This is a simple text response for testing.");',
    "test_image_content": f'return mcp.image("{RED_PIXEL_PNG}", "image/png");',
    "test_audio_content": TINY_WAV_JS + 'return mcp.audio(wav, "audio/wav");',
    "test_embedded_resource": """
return mcp.resource({ uri: "test://embedded-resource", mimeType: "text/plain",
                      text: "This is an embedded resource content." });
""",
    "test_multiple_content_types": f"""
return mcp.content([
  "Multiple content types test:",
  mcp.image("{RED_PIXEL_PNG}", "image/png"),
  mcp.resource({{ uri: "test://mixed-content-resource", mimeType: "application/json",
                 text: JSON.stringify({{ test: "data", value: 123 }}) }}),
]);
""",
    "test_error_handling": 'throw new Error("This tool intentionally returns an error for testing");',
    "test_tool_with_progress": """
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await progress(0, 100);
await sleep(50);
await progress(50, 100);
await sleep(50);
await progress(100, 100);
return mcp.text("Progress test completed");
""",
}

# json-schema-2020-12: flat arguments whose schema keeps every 2020-12 keyword as written.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

# http-custom-header-server-validation (SEP-2243): arguments that also travel as Mcp-Param-* headers.
CUSTOM_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"},
    },
    "required": ["region"],
}

# Tools with flat arguments: name -> (code, the tool's whole input schema).
FLAT_FIXTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "json_schema_2020_12_tool": ('return mcp.text("ok");', JSON_SCHEMA_2020_12),
    "test_custom_headers": ("return mcp.text(`region ${args.region}`);", CUSTOM_HEADERS_SCHEMA),
}


async def create_fixtures(client: Client) -> None:
    """Every fixture tool, through dynamic.tool.create on `client`'s server."""
    for name, code in FIXTURES.items():
        await create_tool(client, name, code)
    for name, (code, schema) in FLAT_FIXTURES.items():
        await create_tool(client, name, code, arguments="flat", inputSchema=schema)


async def _main() -> None:
    from stack import ERA_MODERN, open_client

    parser = argparse.ArgumentParser(description="Create the conformance suite's fixture tools on a server.")
    parser.add_argument("url", help="the server's MCP endpoint, e.g. http://127.0.0.1:8788/mcp")
    parser.add_argument("--admin-token", help="the server's admin token (MCP_ADMIN_TOKEN), if it has one")
    options = parser.parse_args()
    headers = {"X-MCP-Admin-Token": options.admin_token} if options.admin_token else None
    async with open_client(options.url, ERA_MODERN, headers=headers) as client:
        await create_fixtures(client)
    print(f"created {len(FIXTURES) + len(FLAT_FIXTURES)} fixture tools on {options.url}")


if __name__ == "__main__":
    asyncio.run(_main())
