"""Where the hostile-code tests run their attacks: in a dynamic tool, or in a sandbox session.

Both kinds of target offer the same two ways in, so each attack is written once and tried in both:
`js` runs JavaScript (a tool's code, or `sandbox.run_js`) and `sh` runs shell commands (through
`node:child_process` in a tool, or `sandbox.exec`). `harmless_call` is the normal call that must
still work after an attack, and `finish` gives back whatever the target holds (its session).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult

from mcp_calls import admin, create_tool, text_of, unique_name

DYNAMIC_TOOL = "dynamic tool"
SANDBOX_SESSION = "sandbox session"
KINDS = [DYNAMIC_TOOL, SANDBOX_SESSION]

# A tool that runs `args.commands` one after another with `sh -c`, like sandbox.exec does.
SHELL_TOOL_CODE = """
const { spawnSync } = await import("node:child_process");
return args.commands.map((command) => {
  const ran = spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: args.timeoutMs });
  return { command, stdout: ran.stdout ?? "", stderr: ran.stderr ?? "", exitCode: ran.status,
           timedOut: ran.error?.code === "ETIMEDOUT" };
});
"""

# How long a harmless call may keep meeting "executor busy" while the containers of an attack are removed.
BUSY_RETRY_SECONDS = 15.0


def outcome_of(result: CallToolResult) -> dict[str, Any]:
    """The structured outcome of a run (`{ok, result | reason, error, ...}`)."""
    assert isinstance(result.structured_content, dict), f"a run answered without structured content: {result}"
    return result.structured_content


class Target:
    kind: str

    def __init__(self, client: Client):
        self.client = client

    async def js(self, code: str, args: dict[str, Any] | None = None, timeout_ms: int = 10000) -> CallToolResult:
        raise NotImplementedError

    async def sh(self, commands: list[str], timeout_ms: int = 10000) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def harmless_call(self) -> None:
        """A normal call right after an attack must work (retrying only a transient "executor busy")."""
        with anyio.fail_after(BUSY_RETRY_SECONDS + 30):
            while True:
                result = await self.js("return 'still here';")
                if not result.is_error:
                    break
                message = text_of(result)
                assert "busy" in message, f"a harmless call after the attack failed: {message}"
                await anyio.sleep(0.5)
        assert outcome_of(result)["result"] == "still here", result

    async def finish(self) -> None:
        """Give back what the target holds."""


class DynamicToolTarget(Target):
    """Each attack is a dynamic tool of its own, created and then called with `{"args": ...}`."""

    kind = DYNAMIC_TOOL

    async def js(self, code: str, args: dict[str, Any] | None = None, timeout_ms: int = 10000) -> CallToolResult:
        name = unique_name("attack")
        await create_tool(self.client, name, code, timeoutMs=timeout_ms)
        return await self.client.call_tool(name, {"args": args or {}})

    async def sh(self, commands: list[str], timeout_ms: int = 10000) -> list[dict[str, Any]]:
        result = await self.js(SHELL_TOOL_CODE, {"commands": commands, "timeoutMs": timeout_ms}, timeout_ms + 5000)
        assert not result.is_error, f"the shell tool failed: {text_of(result)}"
        return outcome_of(result)["result"]


class SessionTarget(Target):
    """One sandbox session per test, stopped at the end."""

    kind = SANDBOX_SESSION

    def __init__(self, client: Client):
        super().__init__(client)
        self.session_id: str | None = None

    async def start(self) -> None:
        self.session_id = (await admin(self.client, "sandbox.initialize", {}))["sessionId"]

    async def restart(self) -> None:
        """Stop this session (whatever state the attack left it in) and start a fresh one."""
        await self.finish()
        await self.start()

    async def js(self, code: str, args: dict[str, Any] | None = None, timeout_ms: int = 10000) -> CallToolResult:
        arguments = {"sessionId": self.session_id, "code": code, "args": args or {}, "timeoutMs": timeout_ms}
        return await self.client.call_tool("sandbox.run_js", arguments)

    async def sh(self, commands: list[str], timeout_ms: int = 10000) -> list[dict[str, Any]]:
        arguments = {"sessionId": self.session_id, "commands": commands, "timeoutMs": timeout_ms}
        result = await self.client.call_tool("sandbox.exec", arguments)
        content = result.structured_content
        assert isinstance(content, dict) and "results" in content, f"sandbox.exec failed: {text_of(result)}"
        return content["results"]

    async def finish(self) -> None:
        if self.session_id is not None:
            await admin(self.client, "sandbox.stop", {"sessionId": self.session_id})
            self.session_id = None


async def new_target(kind: str, client: Client) -> Target:
    if kind == DYNAMIC_TOOL:
        return DynamicToolTarget(client)
    target = SessionTarget(client)
    await target.start()
    return target


def describe(results: list[dict[str, Any]]) -> str:
    return json.dumps(results, indent=1)
