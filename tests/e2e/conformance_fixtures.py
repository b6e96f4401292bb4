"""The fixture tools of the official MCP conformance suite (@modelcontextprotocol/conformance
0.2.0-alpha.12) that dynamic tools can express, written as dynamic tools: name -> code. Each returns
what the suite's scenario asks for, through the harness's `mcp` helpers and `progress()`.
"""

from __future__ import annotations

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
