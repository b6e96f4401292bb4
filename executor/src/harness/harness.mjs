// Runs one tool call inside the sandbox: `node --input-type=module -e <this>`.
// Input comes on stdin only, as one JSON envelope {code, args, marker,
// endMarker, nodeModules?, egress?}, so code and args never show up in `docker inspect`.
// The outcome is ONE frame on stdout: the marker followed by JSON and a
// newline. Once it is flushed, the end marker goes to stderr: the executor
// then has all output written before the frame (Docker does not order the two
// pipes), and need not wait for the exit. Both markers are random per run and
// never visible to the tool's code, so its own output cannot forge either.
// Written for any stock Node >= 18; it needs nothing from the image.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// Bound before user code runs, so patching process.stdout or JSON cannot
// redirect or reshape the frame.
const writeStdout = process.stdout.write.bind(process.stdout);
const writeStderr = process.stderr.write.bind(process.stderr);
const stringify = JSON.stringify;
const exit = process.exit.bind(process);

let marker = null;
let endMarker = null;
let frameSent = false;
let moduleDir = null;

function sendFrame(frame) {
  if (frameSent) return;
  frameSent = true;
  // In a session /tmp outlives the run; elsewhere this costs nothing.
  if (moduleDir) {
    try {
      rmSync(moduleDir, { recursive: true, force: true });
    } catch {}
  }
  // Exit only once the frame and the end marker are flushed, and exit at
  // once so stray timers in the tool's code cannot print after them.
  writeStdout(marker + frame + "\n", () => writeStderr(endMarker, () => exit(0)));
}

function describe(value) {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function threwFrame(error) {
  const isError =
    error instanceof Error ||
    (error !== null && typeof error === "object" && typeof error.message === "string");
  if (!isError) {
    return stringify({ status: "threw", name: "", message: describe(error), stack: "" });
  }
  let name = "";
  let message = "";
  let stack = "";
  try {
    name = describe(error.name ?? "");
    message = describe(error.message ?? "");
    // Drop the harness's own frames (`[eval1]`); the tool's show as tool.mjs.
    stack = describe(error.stack ?? "")
      .split("\n")
      .filter((line) => !line.includes("[eval"))
      .join("\n");
  } catch {
    message = describe(error);
  }
  return stringify({ status: "threw", name, message, stack });
}

function resultFrame(value) {
  let json;
  try {
    json = value === undefined ? "null" : stringify(value);
  } catch (error) {
    return badResult(error && error.message ? error.message : describe(error));
  }
  if (json === undefined) {
    return badResult(`a ${typeof value} cannot be turned into JSON`);
  }
  return '{"status":"ok","result":' + json + "}";
}

function badResult(reason) {
  return stringify({
    status: "bad_result",
    message: `the returned value is not JSON-serialisable: ${reason}`,
  });
}

// Errors the code leaves behind (a rejected promise nobody awaited, a throw in
// a timer) would otherwise crash Node without a frame; report the first one.
// After the frame they are ignored.
process.on("unhandledRejection", (reason) => sendFrame(threwFrame(reason)));
process.on("uncaughtException", (error) => sendFrame(threwFrame(error)));

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const envelope = JSON.parse(Buffer.concat(chunks).toString("utf8"));
marker = envelope.marker;
endMarker = envelope.endMarker;

// EGRESS HOOK (executor/src/egress/): a run that may reach the network gets
// the proxy shim before its code runs. Nothing else changes.
if (envelope.egress) await import(pathToFileURL(envelope.egress).href);

// The module is a real file, so bare imports resolve: through `node_modules`
// next to it, a link to the read-only dependency cache. The wrapper shares
// the first line with the code, so stack line numbers are the code's own.
const source =
  "export async function run(args) {" + envelope.code + "\n}\n//# sourceURL=tool.mjs\n";
let toolModule;
try {
  moduleDir = mkdtempSync(join(tmpdir(), "dynamic-mcp-"));
  if (envelope.nodeModules) symlinkSync(envelope.nodeModules, join(moduleDir, "node_modules"));
  const modulePath = join(moduleDir, "tool.mjs");
  writeFileSync(modulePath, source);
  toolModule = await import(pathToFileURL(modulePath).href);
} catch (error) {
  if (error instanceof SyntaxError) {
    sendFrame(stringify({ status: "syntax", message: describe(error.message) }));
  } else {
    sendFrame(threwFrame(error));
  }
}

if (toolModule && typeof toolModule.run === "function") {
  try {
    sendFrame(resultFrame(await toolModule.run(envelope.args)));
  } catch (error) {
    sendFrame(threwFrame(error));
  }
}
