"""Hostile code, through the real stack: one test per attack, each tried as a dynamic tool and in a
sandbox session (see attack_targets.py).

Every attack must be contained, and the caller must get a clear error or a harmless result that
proves the containment. Afterwards the server must be healthy (`system.health` answers ok and a
normal call works) and no container of the test's executor may be left (the session's goes with
`sandbox.stop`). docs/SECURITY.md lists each attack with what happens and the test that shows it.

The server runs with an admin token (which the attacks then look for), a small memory limit so the
balloon bursts quickly, a container cap of 4 and a guard generous enough to let 50 calls through.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from attack_targets import KINDS, SANDBOX_SESSION, SessionTarget, Target, describe, new_target, outcome_of
from docker_probe import SANDBOX_IMAGE, wait_for_only_warm_containers
from mcp_calls import admin, create_tool, text_of, unique_name
from stack import ERA_MODERN, HttpFrontend

pytestmark = pytest.mark.anyio

MEMORY_LIMIT = "128m"
PIDS_LIMIT = 128  # the executor's default MCP_SANDBOX_PIDS_LIMIT
MAX_OUTPUT_BYTES = 200_000  # the executor's default MCP_SANDBOX_MAX_OUTPUT_BYTES
MAX_CONTAINERS = 4
CONTAINERS_GONE_WITHIN = 15.0
# A value only the server's environment holds (the admin token aside); attacks look for both.
HOST_SECRET_VARIABLE = "DYNAMIC_MCP_E2E_HOST_SECRET"


@pytest.fixture
def admin_token() -> str:
    return f"e2e-admin-{secrets.token_hex(16)}"


@pytest.fixture
def host_secret() -> str:
    return f"e2e-secret-{secrets.token_hex(16)}"


@pytest.fixture
def server(launcher, admin_token, host_secret) -> HttpFrontend:
    settings = {
        "MCP_ADMIN_TOKEN": admin_token,
        HOST_SECRET_VARIABLE: host_secret,
        "MCP_SANDBOX_MEMORY_LIMIT": MEMORY_LIMIT,
        "MCP_EXECUTOR_MAX_CONTAINERS": str(MAX_CONTAINERS),
        # A fixed pool, so that whatever is left beyond it is a leak.
        "MCP_EXECUTOR_WARM_POOL_SIZE": "1",
        "MCP_TOOL_MAX_CONCURRENCY": "64",
        "MCP_TOOL_MAX_CALLS_PER_WINDOW": "1000",
    }
    return launcher.http_frontend(settings=settings, headers={"X-MCP-Admin-Token": admin_token})


@pytest.fixture(params=KINDS, ids=["dynamic-tool", "sandbox-session"])
def kind(request) -> str:
    return request.param


@asynccontextmanager
async def attacked(server: HttpFrontend, kind: str) -> AsyncIterator[Target]:
    """A target to attack; afterwards the server must be healthy, and clean once the target is given back."""
    async with server.connect(ERA_MODERN) as client:
        target = await new_target(kind, client)
        yield target
        health = await admin(client, "system.health", {})
        assert health["status"] == "ok", health
        await target.harmless_call()
        await target.finish()
    await wait_for_only_warm_containers(server.executor_id, CONTAINERS_GONE_WITHIN)


def reason(result) -> str:
    assert result.is_error, f"the attack should have failed, but returned {result.structured_content!r}"
    return outcome_of(result)["reason"]


async def test_fork_bomb(server, kind):
    code = """
const { spawn } = await import("node:child_process");
let started = 0, refused = 0, firstError = null;
const until = Date.now() + 3000;
while (Date.now() < until) {
  try {
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    child.on("error", (e) => { refused++; firstError ??= e.code; });
    if (child.pid) started++;
  } catch (e) { refused++; firstError ??= e.code; }
  await new Promise((r) => setTimeout(r, 1));
}
return { started, refused, firstError };
"""
    async with attacked(server, kind) as target:
        result = await target.js(code, timeout_ms=20000)
        if result.is_error:
            # Node itself may die when it cannot start a thread: that is the limit too.
            assert reason(result) == "resourceLimit", text_of(result)
        else:
            bomb = outcome_of(result)["result"]
            assert bomb["started"] < PIDS_LIMIT, f"more processes than the pids limit: {bomb}"
            assert bomb["refused"] > 0 and bomb["firstError"] == "EAGAIN", f"the bomb was never stopped: {bomb}"
        if isinstance(target, SessionTarget):
            # The bomb's sleepers fill only this session's process table; stopping it frees them.
            await target.restart()


async def test_memory_balloon(server, kind):
    code = "const keep = [];\nwhile (true) keep.push(Buffer.alloc(1 << 20, 1));"
    async with attacked(server, kind) as target:
        started = time.monotonic()
        result = await target.js(code, timeout_ms=30000)
        assert reason(result) == "resourceLimit", text_of(result)
        assert f"{MEMORY_LIMIT} memory" in text_of(result), text_of(result)
        assert time.monotonic() - started < 20, "the balloon was not stopped by the memory limit"


async def test_cpu_spin_past_the_timeout(server, kind):
    async with attacked(server, kind) as target:
        started = time.monotonic()
        result = await target.js("while (true) {}", timeout_ms=2000)
        elapsed = time.monotonic() - started
        assert reason(result) == "timedOut", text_of(result)
        assert "timed out after 2000 ms" in text_of(result), text_of(result)
        assert elapsed < 8, f"a 2000 ms timeout was answered after {elapsed:.1f} s"
        if isinstance(target, SessionTarget):
            spinners = await target.sh(["ps -o pid,args | grep -c '[n]ode --input-type' || true"])
            assert spinners[0]["stdout"].strip() == "0", f"the spinning run still runs: {describe(spinners)}"
            shell = await target.sh(["while :; do :; done", "echo never"], timeout_ms=2000)
            assert shell[0]["timedOut"] is True and shell[0]["exitCode"] is None, describe(shell)


async def test_one_hundred_megabytes_of_output(server, kind):
    code = """
const chunk = "x".repeat(1 << 20);
for (let i = 0; i < 100; i++) {
  if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once("drain", r));
}
return { wrote: 100 * chunk.length };
"""
    async with attacked(server, kind) as target:
        result = await target.js(code, timeout_ms=60000)
        assert not result.is_error, text_of(result)
        outcome = outcome_of(result)
        assert outcome["result"] == {"wrote": 100 << 20}
        assert outcome["stdoutTruncated"] is True, "100 MB of output was not cut"
        assert 0 < len(outcome["stdout"]) <= MAX_OUTPUT_BYTES, len(outcome["stdout"])


async def test_writing_to_root_and_executing_from_tmp(server, kind):
    async with attacked(server, kind) as target:
        results = await target.sh(
            [
                "touch /pwned; echo $?",
                "echo x > /etc/passwd; echo $?",
                "cp /bin/busybox /tmp/bb && chmod 755 /tmp/bb && /tmp/bb echo escaped; echo $?",
                "cp /bin/busybox /work/bb && chmod 755 /work/bb && /work/bb echo escaped; echo $?",
            ]
        )
        for write in results[:2]:
            assert "Read-only file system" in write["stderr"] and write["stdout"] == "1\n", describe(results)
        for run in results[2:]:
            assert "escaped" not in run["stdout"], describe(results)
            assert "Permission denied" in run["stderr"] and run["stdout"].strip() == "126", describe(results)


def needle_parts(secret: str) -> list[str]:
    """A secret in two halves: the attack joins them in memory, so it is never in a file or command line."""
    return [secret[: len(secret) // 2], secret[len(secret) // 2 :]]


SECRET_SEARCH_CODE = """
const fs = await import("node:fs");
const needles = args.secrets.map(([a, b]) => Buffer.from(a + b));
const found = [];
const search = (where, bytes) => { for (const n of needles) if (bytes.includes(n)) found.push(where); };
search("process.env", Buffer.from(JSON.stringify(process.env)));
for (const pid of fs.readdirSync("/proc").filter((p) => /^[0-9]+$/.test(p))) {
  for (const file of ["environ", "cmdline"]) {
    try { search(`/proc/${pid}/${file}`, fs.readFileSync(`/proc/${pid}/${file}`)); } catch {}
  }
}
// Every readable file, in chunks (the run has little memory) that overlap by more than a needle.
const chunk = Buffer.alloc(1 << 20);
const OVERLAP = 128;
let files = 0;
const scan = (path) => {
  let fd;
  try { fd = fs.openSync(path, "r"); } catch { return; }
  files++;
  let carry = 0, offset = 0, read;
  try {
    while ((read = fs.readSync(fd, chunk, carry, chunk.length - carry, offset)) > 0) {
      offset += read;
      const filled = carry + read;
      search(path, chunk.subarray(0, filled));
      carry = Math.min(OVERLAP, filled);
      chunk.copy(chunk, 0, filled - carry, filled);
    }
  } catch {}
  fs.closeSync(fd);
};
const walk = (dir) => {
  let entries;
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
  for (const entry of entries) {
    const path = (dir === "/" ? "" : dir) + "/" + entry.name;
    if (entry.isDirectory()) { if (!["/proc", "/sys", "/dev"].includes(path)) walk(path); }
    else if (entry.isFile()) scan(path);
  }
};
walk("/");
return { found, files, environment: Object.keys(process.env).sort() };
"""


async def test_host_files_and_server_secrets_are_out_of_reach(server, kind, admin_token, host_secret, tmp_path):
    host_file = tmp_path / f"host-only-{uuid.uuid4().hex}"
    host_file.write_text("host data")
    image_passwd = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat", SANDBOX_IMAGE, "/etc/passwd"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    with open("/etc/passwd") as passwd:
        host_passwd = passwd.read()
    assert image_passwd != host_passwd, "the test needs an image whose /etc/passwd differs from the host's"

    async with attacked(server, kind) as target:
        looks = await target.sh([f"cat {host_file}", "cat /etc/shadow", "cat /etc/passwd"])
        assert "No such file" in looks[0]["stderr"] and looks[0]["stdout"] == "", describe(looks)
        assert looks[1]["exitCode"] != 0 and looks[1]["stdout"] == "", f"/etc/shadow is readable: {describe(looks)}"
        assert looks[2]["stdout"] == image_passwd, "the container's /etc is not the image's"
        assert os.path.exists("/etc/shadow"), "the host has an /etc/shadow, which the container must not see"

        secrets_to_find = [needle_parts(admin_token), needle_parts(host_secret)]
        result = await target.js(SECRET_SEARCH_CODE, {"secrets": secrets_to_find}, timeout_ms=60000)
        assert not result.is_error, text_of(result)
        search = outcome_of(result)["result"]
        assert search["found"] == [], f"the admin token or the server's environment leaked into: {search['found']}"
        assert search["files"] > 100, f"the search read too few files to mean anything: {search}"
        leaked = [v for v in search["environment"] if v.startswith("MCP_") or v == HOST_SECRET_VARIABLE]
        assert leaked == [], f"the server's settings are in the code's environment: {leaked}"


NETWORK_CODE = """
const net = await import("node:net");
const dns = await import("node:dns/promises");
const os = await import("node:os");
const connect = (host, port) => new Promise((resolve) => {
  const socket = net.connect({ host, port, timeout: 3000 });
  socket.on("connect", () => { socket.destroy(); resolve("connected"); });
  socket.on("timeout", () => { socket.destroy(); resolve("timeout"); });
  socket.on("error", (e) => resolve(e.code));
});
let lookup;
try { lookup = (await dns.lookup("registry.npmjs.org")).address; } catch (e) { lookup = e.code; }
return {
  interfaces: Object.keys(os.networkInterfaces()),
  dockerGateway: await connect("172.17.0.1", 2375),
  frontendViaGateway: await connect("172.17.0.1", args.port),
  frontendViaLoopback: await connect("127.0.0.1", args.port),
  internet: await connect("1.1.1.1", 443),
  lookup,
};
"""


async def test_network_egress(server, kind):
    async with attacked(server, kind) as target:
        result = await target.js(NETWORK_CODE, {"port": server.port}, timeout_ms=20000)
        assert not result.is_error, text_of(result)
        reached = outcome_of(result)["result"]
        assert reached["interfaces"] == ["lo"], reached
        for route in ("dockerGateway", "frontendViaGateway", "internet"):
            assert reached[route] == "ENETUNREACH", reached
        # 127.0.0.1 is the container's own loopback: the host's services are not there.
        assert reached["frontendViaLoopback"] == "ECONNREFUSED", reached
        assert reached["lookup"] in ("EAI_AGAIN", "ENOTFOUND"), reached


async def test_raw_sockets_mount_setuid_and_unshare(server, kind):
    async with attacked(server, kind) as target:
        results = await target.sh(
            [
                "ping -c 1 -W 1 127.0.0.1",
                "mount -t tmpfs none /tmp",
                "unshare -r id",
                "su -c id root < /dev/null",
                "find / -xdev -perm -4000 -type f 2>/dev/null | wc -l",
                "cp /bin/busybox /tmp/suid && chmod 4755 /tmp/suid; stat -c %a /tmp/suid; grep -c nosuid /proc/mounts",
                "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status",
            ]
        )
        ping, mount, unshare, su, setuid_files, suid_copy, identity = results
        assert ping["exitCode"] != 0 and "permission denied" in ping["stderr"], describe(results)
        assert mount["exitCode"] != 0 and "permission denied" in mount["stderr"], describe(results)
        assert unshare["exitCode"] != 0 and "Operation not permitted" in unshare["stderr"], describe(results)
        assert su["exitCode"] != 0 and "uid=0" not in su["stdout"], describe(results)
        assert setuid_files["stdout"].strip() == "0", f"the image has setuid binaries: {describe(results)}"
        assert int(suid_copy["stdout"].split()[-1]) > 0, f"no nosuid mounts: {describe(results)}"
        # SETUID and SETGID stay in the bounding set for the harness's supervisor; with no-new-privileges
        # and no setuid file, nothing the code runs can raise them again (su above, the copy on nosuid).
        assert identity["stdout"].splitlines() == [
            "65534",
            "CapEff:\t0000000000000000",
            "CapBnd:\t00000000000000c0",
            "NoNewPrivs:\t1",
        ], describe(results)


async def test_looking_for_the_docker_socket(server, kind):
    async with attacked(server, kind) as target:
        results = await target.sh(
            [
                "ls -l /var/run/docker.sock /run/docker.sock",
                "find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print 2>/dev/null",
                "env | grep -i -e docker -e containerd; true",
            ]
        )
        sockets, found, environment = results
        assert sockets["exitCode"] != 0 and sockets["stderr"].count("No such file") == 2, describe(results)
        assert found["stdout"] == "", f"sockets are visible in the container: {describe(results)}"
        assert environment["stdout"] == "", describe(results)


async def test_ten_megabyte_args(server, kind):
    code = "return { length: args.blob.length };"
    async with attacked(server, kind) as target:
        started = time.monotonic()
        with pytest.raises(MCPError) as refused:
            await target.js(code, {"blob": "x" * 10_000_000})
        assert "larger than this server accepts" in refused.value.message, refused.value.message
        too_big = await target.js(code, {"blob": "x" * 3_500_000})
        assert too_big.is_error and "at most 3145728 bytes" in text_of(too_big), text_of(too_big)
        fits = await target.js(code, {"blob": "x" * 2_000_000})
        assert not fits.is_error, text_of(fits)
        assert outcome_of(fits)["result"] == {"length": 2_000_000}
        assert time.monotonic() - started < 30, "large arguments were answered slowly"


async def test_fifty_parallel_calls_against_the_container_cap(server, kind):
    answers: list[str] = []

    async with server.connect(ERA_MODERN) as client:
        if kind == SANDBOX_SESSION:

            async def one_call() -> None:
                result = await client.call_tool("sandbox.initialize", {})
                if result.is_error:
                    answers.append(text_of(result))
                else:
                    answers.append("ok")
                    await admin(client, "sandbox.stop", {"sessionId": result.structured_content["sessionId"]})

        else:
            name = unique_name("parallel")
            await create_tool(client, name, "await new Promise((r) => setTimeout(r, 1000));\nreturn 1;")

            async def one_call() -> None:
                result = await client.call_tool(name, {"args": {}})
                answers.append(text_of(result) if result.is_error else "ok")

        with anyio.fail_after(90):
            async with anyio.create_task_group() as calls:
                for _ in range(50):
                    calls.start_soon(one_call)

    # Sessions reserve their place under MCP_SANDBOX_MAX_SESSIONS before a container: either limit may refuse.
    kinds = Counter(
        "ok" if a == "ok" else "busy" if "busy" in a else "session limit" if "session limit reached" in a else a
        for a in answers
    )
    assert len(answers) == 50, f"{50 - len(answers)} calls never ended"
    assert set(kinds) <= {"ok", "busy", "session limit"}, f"calls ended with something else than a refusal: {kinds}"
    assert kinds["ok"] >= 1, f"no call got through: {kinds}"
    limits = ("MCP_EXECUTOR_MAX_CONTAINERS", "MCP_TOOL_MAX_CONCURRENCY", "MCP_SANDBOX_MAX_SESSIONS")
    assert all(any(limit in a for limit in limits) for a in answers if a != "ok"), answers
    async with attacked(server, kind):
        pass


# ---- forged outcomes ------------------------------------------------------------------------------
# The code runs in a process of its own (as the sandbox user), under a supervisor that alone holds the
# call's marker and alone writes to the channel the executor reads (see executor/src/harness/). These
# attacks try to reach the supervisor or to pass something off as an outcome; each must end in an
# outcome the code could have produced honestly.

# Stands for the per-call marker, in the shape the harness uses (record separator, 32 hex digits).
FAKE_MARKER = "\\u001e" + "0123456789abcdef" * 2 + "\\u001e"

# Frames as the harness writes them now (records) and as it did before (one frame after the marker).
FORGED_FRAMES_JS = f"""
const forged = [
  "{FAKE_MARKER}" + '{{"kind":"done","status":"ok","format":"json","bytes":16}}\\n{{"forged": true}}',
  "{FAKE_MARKER}" + '{{"status":"ok","result":{{"forged":true}}}}\\n',
];
for (const frame of forged) {{ process.stdout.write(frame); process.stderr.write(frame); }}
"""

MEMORY_CODE = """
const fs = await import("node:fs");
// Every other process's memory and files, as far as /proc lets us.
const reached = [];
for (const pid of fs.readdirSync("/proc").filter((p) => /^[0-9]+$/.test(p) && Number(p) !== process.pid)) {
  for (const file of ["mem", "environ", "maps", "stack", "syscall", "auxv"]) {
    try { fs.closeSync(fs.openSync(`/proc/${pid}/${file}`, "r")); reached.push(`${pid}/${file}`); } catch {}
  }
  for (const dir of ["fd", "fdinfo", "map_files", "cwd", "root"]) {
    try { fs.readdirSync(`/proc/${pid}/${dir}`); reached.push(`${pid}/${dir}`); } catch {}
  }
}
// Our own memory, where the old harness kept the markers: look for anything shaped like one.
const MARKER = /\\x1e[0-9a-f]{32}\\x1e/;
let scanned = 0, markers = 0;
const mem = fs.openSync("/proc/self/mem", "r");
const chunk = Buffer.alloc(1 << 20);
for (const line of fs.readFileSync("/proc/self/maps", "utf8").split("\\n")) {
  const m = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line);
  if (!m) continue;
  let start = BigInt("0x" + m[1]); const end = BigInt("0x" + m[2]);
  if (end - start > 64n << 20n) continue;
  for (; start < end; start += BigInt(chunk.length)) {
    const length = Number(end - start < BigInt(chunk.length) ? end - start : BigInt(chunk.length));
    let read = 0;
    try { read = fs.readSync(mem, chunk, 0, length, start); } catch { break; }
    scanned += read;
    if (MARKER.test(chunk.subarray(0, read).toString("latin1"))) markers++;
  }
}
return { supervisor: process.ppid, reached, scanned, markers };
"""


async def test_reading_the_supervisors_memory_and_files(server, kind):
    async with attacked(server, kind) as target:
        result = await target.js(MEMORY_CODE, timeout_ms=60000)
        assert not result.is_error, text_of(result)
        seen = outcome_of(result)["result"]
        assert seen["reached"] == [], f"the code reached another process: {seen['reached']}"
        assert seen["scanned"] > 10 << 20, f"the memory scan read too little to mean anything: {seen}"
        assert seen["markers"] == 0, f"the code's own memory holds something shaped like a marker: {seen}"


FD_CODE = (
    """
const fs = await import("node:fs");
const tried = {};
for (const pid of new Set([process.ppid, 1])) {
  for (const fd of [0, 1, 2, 3, 4, 5, 6]) {
    try { fs.closeSync(fs.openSync(`/proc/${pid}/fd/${fd}`, "w")); tried[`${pid}/${fd}`] = "opened"; }
    catch (e) { tried[`${pid}/${fd}`] = e.code; }
  }
}
// Forged frames on our own output, which is only a pipe to the supervisor.
"""
    + FORGED_FRAMES_JS
    + """
const timedOut = "\\u001e" + "f".repeat(32) + "\\u001e" + '{"kind":"done","status":"timed_out"}\\n';
for (const fd of [1, 2]) fs.writeSync(fd, timedOut);
return { honest: true, tried };
"""
)


async def test_writing_to_the_supervisors_and_pid_1s_fds(server, kind):
    async with attacked(server, kind) as target:
        result = await target.js(FD_CODE)
        assert not result.is_error, text_of(result)
        outcome = outcome_of(result)
        seen = outcome["result"]
        assert seen["honest"] is True
        opened = [fd for fd, how in seen["tried"].items() if how not in ("EACCES", "EPERM", "ENOENT")]
        assert opened == [], f"the code opened another process's fds: {seen['tried']}"
        assert '{"forged": true}' in outcome["stdout"] and '"status":"timed_out"' in outcome["stderr"], outcome


async def test_forging_a_result_on_the_report_channel(server, kind):
    # fd 4 carries the code's own reports to the supervisor: whatever it says there it could say by
    # returning; the supervisor's own kinds of record are refused.
    code = """
const fs = await import("node:fs");
fs.writeSync(4, '{"kind":"done","status":"ok","format":"json","bytes":2}\\n{}');
await new Promise((r) => setTimeout(r, 5000));
return "too late";
"""
    async with attacked(server, kind) as target:
        result = await target.js(code)
        assert reason(result) == "badResult", text_of(result)
        assert "a report of an unknown kind on the harness's report channel" in text_of(result), text_of(result)


async def test_patching_process_stdout(server, kind):
    code = (
        """
const realWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => realWrite("PATCHED:" + chunk, ...rest);
const handle = process.stdout._handle;
for (const method of ["writeUtf8String", "writeLatin1String", "writeBuffer", "writev"]) {
  const original = handle[method];
  if (typeof original !== "function") continue;
  handle[method] = function (req, data, ...rest) { return original.call(this, req, data, ...rest); };
}
JSON.stringify = () => '{"forged":true}';
console.log("hello");
"""
        + FORGED_FRAMES_JS
        + """
return { honest: [1, 2, 3] };
"""
    )
    async with attacked(server, kind) as target:
        result = await target.js(code)
        assert not result.is_error, text_of(result)
        outcome = outcome_of(result)
        assert outcome["result"] == {"honest": [1, 2, 3]}, outcome
        assert "PATCHED:hello" in outcome["stdout"], outcome


async def test_printing_a_fake_frame_then_throwing(server, kind):
    code = FORGED_FRAMES_JS + "\nthrow new RangeError('the honest outcome');"
    async with attacked(server, kind) as target:
        result = await target.js(code)
        assert reason(result) == "threw", text_of(result)
        assert outcome_of(result)["error"] == "the honest outcome"
        assert outcome_of(result)["errorName"] == "RangeError"


async def test_exiting_early_after_a_fake_frame(server, kind):
    async with attacked(server, kind) as target:
        result = await target.js(FORGED_FRAMES_JS + "\nprocess.exit(0);")
        assert reason(result) == "exited", text_of(result)
        assert "exited with code 0 before returning a result" in text_of(result), text_of(result)
        result = await target.js(FORGED_FRAMES_JS + "\nprocess.reallyExit(7);")
        assert reason(result) == "exited" and "code 7" in text_of(result), text_of(result)


SIGNAL_CODE = """
const net = await import("node:net");
const sent = {};
for (const pid of new Set([process.ppid, 1])) {
  for (const signal of ["SIGUSR1", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR2", "SIGALRM", "SIGTSTP", "SIGTTIN",
                        "SIGXCPU", "SIGPROF", "SIGPIPE", "SIGWINCH"]) {
    const key = `${pid} ${signal}`;
    try { process.kill(pid, signal); sent[key] = "sent"; } catch (e) { sent[key] = e.code; }
  }
}
await new Promise((r) => setTimeout(r, 500));
// SIGUSR1 opens a Node process's inspector on 127.0.0.1:9229, unless it listens for the signal itself.
const inspector = await new Promise((resolve) => {
  const socket = net.connect({ host: "127.0.0.1", port: 9229 });
  socket.on("connect", () => { socket.destroy(); resolve("open"); });
  socket.on("error", (e) => resolve(e.code));
});
return { survived: true, inspector, sent, supervisor: process.ppid };
"""


async def test_signalling_the_supervisor(server, kind):
    async with attacked(server, kind) as target:
        result = await target.js(SIGNAL_CODE)
        assert not result.is_error, text_of(result)
        seen = outcome_of(result)["result"]
        assert seen["inspector"] == "ECONNREFUSED", f"the supervisor's inspector opened: {seen}"
        assert seen["survived"] is True
        # The supervisor runs as the code's user, so the signals were sent; they just changed nothing.
        assert seen["sent"][f"{seen['supervisor']} SIGUSR1"] == "sent", seen


KILL_SUPERVISOR_CODE = """
for (const signal of ["SIGSEGV", "SIGBUS", "SIGSTOP", "SIGKILL"]) {
  try { process.kill(process.ppid, signal); } catch {}
}
await new Promise((r) => setTimeout(r, 500));
return "survived";
"""


async def test_killing_or_stopping_the_supervisor(server, kind):
    async with attacked(server, kind) as target:
        result = await target.js(KILL_SUPERVISOR_CODE, timeout_ms=5000)
        if kind == SANDBOX_SESSION:
            # In a session the supervisor is an exec, not PID 1: the code can kill it, and the call ends as
            # if the code had killed itself with that signal (exit code 128 + n), which it may do anyway.
            assert reason(result) in ("resourceLimit", "exited"), text_of(result)
            assert "with code 1" in text_of(result) or "memory or process limit" in text_of(result), text_of(result)
        else:
            # PID 1 of the run's container ignores SIGKILL and SIGSTOP from inside it (and survives the others).
            assert not result.is_error, text_of(result)
            assert outcome_of(result)["result"] == "survived"
