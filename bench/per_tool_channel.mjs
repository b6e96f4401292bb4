// The in-container share of a per-tool call, without the rest of the product:
// starts the sandbox image's supervisor in its per-tool mode under the per-tool
// container's flags (as executor/src/container/hardening.rs sets them), listens on
// its channel socket as the executor does (executor/src/per_tool/channel.rs), and
// sends it calls of the seed's upper-case tool one at a time, framed as
// executor/src/per_tool/frames.rs and harness/mod.rs frame them. Prints the round
// trip (call frame written to outcome record read) at p50 and p90. Asserts nothing
// but that the calls answer.
//
//   node bench/per_tool_channel.mjs [--calls 40] [--pause-ms 300] [--realm worker|process]
//                                   [--harness <dir with the harness sources>]
//
// The harness sources are read from executor/src/harness (or --harness), so a
// change to them can be measured before it is built into the executor.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values: options } = parseArgs({
  options: {
    calls: { type: "string", default: "40" },
    "pause-ms": { type: "string", default: "300" },
    realm: { type: "string", default: "worker" },
    harness: { type: "string", default: join(dirname(fileURLToPath(import.meta.url)), "../executor/src/harness") },
  },
});
const calls = Number(options.calls);
const pauseMs = Number(options["pause-ms"]);
const WARM_UP = 3;
const IMAGE = "dynamic-mcp-sandbox:latest";
const CHANNEL_DIR = "/run/dynamic-mcp-channel";
const CODE = "return { upper: String(args.text).toUpperCase() };";

const source = (file) => readFileSync(join(options.harness, file), "utf8");
const supervisor = source("shared.mjs") + source("supervisor.mjs");
const child = source("shared.mjs") + source("child.mjs");
const threads = source("shared.mjs") + source("threads.mjs");

const dir = mkdtempSync(join(tmpdir(), "per-tool-channel-"));
chmodSync(dir, 0o777);
const socketPath = join(dir, "channel.sock");
const harnessOptions = JSON.stringify({
  channel: `${CHANNEL_DIR}/channel.sock`,
  realm: options.realm,
  heapMb: 64,
  spares: 2,
  maxCalls: 8,
});
const docker = [
  "run", "--rm", "-i", "--read-only", "--network", "none", "--ipc", "none",
  "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID", "--security-opt", "no-new-privileges",
  "--pids-limit", "128", "--memory", "512m", "--memory-swap", "512m", "--cpus", "1", "--user", "0:0",
  "--tmpfs", "/tmp:rw,nosuid,size=16m,mode=1777", "--tmpfs", "/work:rw,nosuid,size=16m,uid=65534,gid=65534",
  "-w", "/work", "--mount", `type=bind,source=${dir},target=${CHANNEL_DIR},readonly`,
  "--entrypoint", "node", IMAGE, "--input-type=module", "-e", supervisor, "65534:65534", child, harnessOptions,
  ...(options.realm === "worker" ? [threads] : []),
];

// Each call's records, until its outcome (`"kind":"done"`) is in.
const waiting = new Map();
function reader(onRecords) {
  let buffered = Buffer.alloc(0);
  let header = null;
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (!header) {
        const end = buffered.indexOf(10);
        if (end < 0) return;
        header = JSON.parse(buffered.subarray(0, end).toString("utf8"));
        buffered = buffered.subarray(end + 1);
      }
      const bytes = header.bytes ?? 0;
      if (buffered.length < bytes) return;
      onRecords(header.call, buffered.subarray(0, bytes).toString("utf8"));
      buffered = buffered.subarray(bytes);
      header = null;
    }
  };
}

let nextCall = 0;
function call(socket) {
  const marker = `\u001e${randomBytes(16).toString("hex")}\u001e`;
  const body = Buffer.from(JSON.stringify({ code: CODE, args: { text: "hello" }, progress: false }));
  const head = { marker, timeoutMs: 10_000, outputCap: 100_000, resultCap: 100_000, progress: false, bytes: body.length };
  const envelope = Buffer.concat([Buffer.from(JSON.stringify(head) + "\n"), body]);
  const id = nextCall++;
  return new Promise((resolve) => {
    waiting.set(id, { text: "", resolve });
    socket.write(Buffer.concat([Buffer.from(JSON.stringify({ call: id, bytes: envelope.length }) + "\n"), envelope]));
  });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))].toFixed(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function measure(socket) {
  const took = [];
  for (let i = 0; i < calls + WARM_UP; i++) {
    await sleep(pauseMs);
    const began = performance.now();
    const records = await call(socket);
    if (!records.includes("HELLO")) throw new Error(`the call did not answer: ${JSON.stringify(records)}`);
    if (i >= WARM_UP) took.push(performance.now() - began);
  }
  took.sort((a, b) => a - b);
  console.log(
    `${options.realm} realm, ${pauseMs} ms pause, ${took.length} calls: ` +
      `p50 ${quantile(took, 0.5)} ms, p90 ${quantile(took, 0.9)} ms, min ${took[0].toFixed(2)} ms`,
  );
}

const container = spawn("docker", docker, { stdio: ["pipe", "inherit", "inherit"] });
const server = createServer((socket) => {
  socket.on(
    "data",
    reader((id, text) => {
      const call = waiting.get(id);
      if (!call) return;
      call.text += text;
      if (call.text.includes('"kind":"done"')) {
        waiting.delete(id);
        call.resolve(call.text);
      }
    }),
  );
  measure(socket)
    .catch((error) => {
      console.error(error.message);
      process.exitCode = 1;
    })
    // Closing the channel ends the supervisor, and so the container.
    .finally(() => socket.end());
});
container.on("exit", () => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});
server.listen(socketPath, () => chmodSync(socketPath, 0o777));
