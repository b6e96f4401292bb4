// The process — or, in a per-tool container, the worker thread — that runs
// a tool's code, started by the harness before any code exists. It holds
// nothing the code may not see: no marker, no progress token. Until the
// code arrives it runs only this file.
//
// As a process (started by supervisor.mjs as the sandbox user):
// fd 3 (from the supervisor), two frames (shared.mjs), each read as soon as
//   it is whole: {"moduleDir", "problem", "prepared"?, "announceReady"?} at
//   once, then (when the call comes) the envelope
//   {code, args, progress, nodeModules?, preload?: [{name, source, options?}]}
// fd 4 (to the supervisor): with announceReady, {"kind":"ready"} once this
//   process waits for its envelope; then report lines, each one JSON object:
//   {"kind":"progress","progress","total"?,"message"?}
//   {"kind":"result","format":"json"|"content","bytes"} + that many bytes
//   {"kind":"threw","name","message","stack"} | {"kind":"syntax","message"}
//   | {"kind":"bad_result","message"}
// As a worker thread (started by threads.mjs): workerData is
// {moduleDir, problem, prepared?}; the envelope is the first message on the
// parent port; output and the same report bytes go back as messages on it,
// in order.
// In a per-tool container, `prepared` is {code, nodeModules?}: the tool
// revision's code (the same for every call of the container), which this
// realm imports as its module before the call comes; a call with that code
// and no preload then runs it at once. Only code, never a call's args.
// The code can write to the report channel too; whatever it says there it
// could also say by returning or throwing, and the supervisor checks every report.
import { mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { isMainThread, parentPort, workerData } from "node:worker_threads";

// Bound before the code runs, so patching them cannot reshape the reports.
const stringify = JSON.stringify;
const fromBytes = Buffer.from;
const concat = Buffer.concat;
const byteLength = Buffer.byteLength;
const Bytes = Uint8Array;

// A report: its JSON line, then any payload, in one write, so that a small
// report reaches the supervisor in one read.
function reportBytes(message, payload) {
  const line = fromBytes(stringify(message) + "\n");
  return payload === undefined ? line : concat([line, payload]);
}

// One channel per kind of run: fds in a process, the parent port in a worker.
const channel = isMainThread ? processChannel() : workerChannel();
const { writeStdout, writeStderr, report } = channel;

function processChannel() {
  const reports = new Socket({ fd: 4, readable: false, writable: true });
  // An unsettled promise with nothing else pending must still end the run
  // (exit code 13), as it would without the harness.
  reports.unref();
  const input = new Socket({ fd: 3, readable: true, writable: false });
  const frames = [];
  let unreadable = null;
  let closed = false;
  let waiting = null;
  input.on(
    "data",
    frameReader(
      (_header, payload) => {
        frames.push(payload);
        waiting?.();
      },
      (message) => {
        unreadable = message;
        waiting?.();
      },
    ),
  );
  input.on("end", () => {
    closed = true;
    waiting?.();
  });
  // The next frame's JSON, once it is whole.
  const nextFrame = () =>
    new Promise((resolve, reject) => {
      waiting = () => {
        if (frames.length > 0) {
          waiting = null;
          try {
            resolve(JSON.parse(frames.shift().toString("utf8")));
          } catch (error) {
            reject(error);
          }
        } else if (unreadable || closed) {
          waiting = null;
          reject(new Error(`the supervisor's pipe: ${unreadable ?? "closed early"}`));
        }
      };
      waiting();
    });
  return {
    writeStdout: process.stdout.write.bind(process.stdout),
    writeStderr: process.stderr.write.bind(process.stderr),
    report(message, payload) {
      reports.write(reportBytes(message, payload));
    },
    // The supervisor's first frame, at once.
    start: nextFrame,
    // The envelope, when the call comes.
    envelope: nextFrame,
  };
}

function workerChannel() {
  const post = parentPort.postMessage.bind(parentPort);
  const writer = (stream) => (chunk, encoding, done) => {
    const callback = typeof encoding === "function" ? encoding : done;
    const data = typeof chunk === "string" ? fromBytes(chunk, typeof encoding === "string" ? encoding : "utf8") : fromBytes(chunk);
    if (data.length > 0) post({ stream, data: new Bytes(data) });
    if (typeof callback === "function") queueMicrotask(callback);
    return true;
  };
  const writeStdout = writer("stdout");
  const writeStderr = writer("stderr");
  // console and process.stdout write through the same port as the reports,
  // so the supervisor sees output and outcome in the order they happened.
  process.stdout.write = writeStdout;
  process.stderr.write = writeStderr;
  const envelope = new Promise((resolve) =>
    parentPort.once("message", (message) => {
      // As in a process: an unsettled promise with nothing pending ends the run (13).
      parentPort.unref();
      resolve(JSON.parse(fromBytes(message).toString("utf8")));
    }),
  );
  return {
    writeStdout,
    writeStderr,
    report(message, payload) {
      post({ stream: "report", data: new Bytes(reportBytes(message, payload)) });
    },
    start: async () => workerData,
    envelope: () => envelope,
  };
}

let settled = false;

// The outcome: once the code's output so far is flushed (the supervisor
// reads it before it acts on the outcome), then this process waits to be
// stopped.
function settle(message, payload) {
  if (settled) return;
  settled = true;
  writeStdout("", () => writeStderr("", () => report(message, payload)));
}

function describe(value) {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function threw(error) {
  const isError =
    error instanceof Error ||
    (error !== null && typeof error === "object" && typeof error.message === "string");
  if (!isError) return { kind: "threw", name: "", message: describe(error), stack: "" };
  let name = "";
  let message = "";
  let stack = "";
  try {
    name = describe(error.name ?? "");
    message = describe(error.message ?? "");
    // Drop the harness's own frames (`[eval]`); the code's show as tool.mjs.
    stack = describe(error.stack ?? "")
      .split("\n")
      .filter((line) => !line.includes("[eval"))
      .join("\n");
  } catch {
    message = describe(error);
  }
  return { kind: "threw", name, message, stack };
}

function notJson(reason) {
  return { kind: "bad_result", message: `the returned value is not JSON-serialisable: ${reason}` };
}

function settleResult(value) {
  const blocks = contentOf(value);
  if (blocks) {
    let json;
    try {
      json = stringify(blocks);
    } catch (error) {
      settle({ kind: "bad_result", message: `the returned content cannot be sent: ${describe(error?.message ?? error)}` });
      return;
    }
    settle({ kind: "result", format: "content", bytes: byteLength(json) }, fromBytes(json));
    return;
  }
  let json;
  try {
    json = value === undefined ? "null" : stringify(value);
  } catch (error) {
    settle(notJson(error && error.message ? error.message : describe(error)));
    return;
  }
  if (json === undefined) {
    settle(notJson(`a ${typeof value} cannot be turned into JSON`));
    return;
  }
  settle({ kind: "result", format: "json", bytes: byteLength(json) }, fromBytes(json));
}

// Errors the code leaves behind (a rejected promise nobody awaited, a throw
// in a timer) would otherwise crash Node without an outcome; report the first.
process.on("unhandledRejection", (reason) => settle(threw(reason)));
process.on("uncaughtException", (error) => settle(threw(error)));

// ---- the `mcp` helpers: content results ------------------------------------
// A tool returns MCP content by returning one block, or mcp.content([...]).
// Only objects made here count: a plain object that looks like a block is
// an ordinary JSON result, as before. The executor checks every block again.

const blocks = new WeakSet();
const contents = new WeakMap();
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MIME = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?:\s*;.*)?$/;
const AUDIENCES = ["user", "assistant"];

function contentOf(value) {
  if (value !== null && typeof value === "object") {
    if (contents.has(value)) return contents.get(value);
    if (blocks.has(value)) return [value];
  }
  return null;
}

function kindOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function need(ok, helper, what, value) {
  if (!ok) throw new TypeError(`mcp.${helper}: ${what} (got ${kindOf(value)})`);
}

function text(helper, name, value) {
  need(typeof value === "string", helper, `${name} must be a string`, value);
  return value;
}

function base64(helper, name, value) {
  if (value instanceof ArrayBuffer) value = new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    const data = fromBytes(value.buffer, value.byteOffset, value.byteLength).toString("base64");
    need(data.length > 0, helper, `${name} is empty`, value);
    return data;
  }
  need(typeof value === "string", helper, `${name} must be base64 text or bytes (a Buffer or Uint8Array)`, value);
  const data = value.replace(/\s+/g, "");
  if (data.length === 0 || !BASE64.test(data)) {
    throw new TypeError(`mcp.${helper}: ${name} is not base64 (pass the bytes, or their base64 text)`);
  }
  return data;
}

function mimeType(helper, value, family) {
  need(typeof value === "string", helper, `mimeType must be a string such as "${family ?? "text"}/..."`, value);
  if (!MIME.test(value) || (family && !value.toLowerCase().startsWith(`${family}/`))) {
    throw new TypeError(`mcp.${helper}: mimeType "${value}" is not ${family ? `an ${family}/* ` : "a "}MIME type`);
  }
  return value;
}

function uri(helper, value) {
  need(typeof value === "string", helper, "uri must be a string", value);
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value)) {
    throw new TypeError(`mcp.${helper}: uri "${value.slice(0, 100)}" has no scheme (e.g. file:///x or https://...)`);
  }
  return value;
}

// `options`: {annotations: {audience: ["user"|"assistant"], priority: 0..1, lastModified: ISO 8601}}
function annotate(helper, block, options) {
  if (options === undefined) return block;
  need(options !== null && typeof options === "object", helper, "options must be an object", options);
  const { annotations } = options;
  if (annotations === undefined) return block;
  need(annotations !== null && typeof annotations === "object", helper, "annotations must be an object", annotations);
  const checked = {};
  if (annotations.audience !== undefined) {
    const audience = annotations.audience;
    need(Array.isArray(audience) && audience.every((a) => AUDIENCES.includes(a)), helper,
      'annotations.audience must be an array of "user" and "assistant"', audience);
    checked.audience = [...audience];
  }
  if (annotations.priority !== undefined) {
    const priority = annotations.priority;
    need(typeof priority === "number" && priority >= 0 && priority <= 1, helper,
      "annotations.priority must be a number from 0 to 1", priority);
    checked.priority = priority;
  }
  if (annotations.lastModified !== undefined) {
    const at = annotations.lastModified instanceof Date ? annotations.lastModified.toISOString() : annotations.lastModified;
    need(typeof at === "string" && !Number.isNaN(Date.parse(at)), helper,
      "annotations.lastModified must be an ISO 8601 time or a Date", annotations.lastModified);
    checked.lastModified = at;
  }
  return { ...block, annotations: checked };
}

function block(value) {
  blocks.add(Object.freeze(value));
  return value;
}

function media(helper, type, family) {
  return (data, type_, options) =>
    block(annotate(helper, { type, data: base64(helper, "data", data), mimeType: mimeType(helper, type_, family) }, options));
}

const mcp = Object.freeze({
  text: (value, options) => block(annotate("text", { type: "text", text: text("text", "text", value) }, options)),
  image: media("image", "image", "image"),
  audio: media("audio", "audio", "audio"),
  resourceLink: (target, name, options = {}) => {
    const link = { type: "resource_link", uri: uri("resourceLink", target), name: text("resourceLink", "name", name) };
    need(options !== null && typeof options === "object", "resourceLink", "options must be an object", options);
    for (const field of ["title", "description"]) {
      if (options[field] !== undefined) link[field] = text("resourceLink", field, options[field]);
    }
    if (options.mimeType !== undefined) link.mimeType = mimeType("resourceLink", options.mimeType);
    if (options.size !== undefined) {
      need(Number.isSafeInteger(options.size) && options.size >= 0, "resourceLink", "size must be a whole number of bytes", options.size);
      link.size = options.size;
    }
    return block(annotate("resourceLink", link, options));
  },
  resource: (resource, options) => {
    need(resource !== null && typeof resource === "object", "resource",
      "pass {uri, mimeType?, text} or {uri, mimeType?, blob}", resource);
    const contents = { uri: uri("resource", resource.uri) };
    if (resource.mimeType !== undefined) contents.mimeType = mimeType("resource", resource.mimeType);
    if ((resource.text === undefined) === (resource.blob === undefined)) {
      throw new TypeError("mcp.resource: give exactly one of text (a string) and blob (base64 or bytes)");
    }
    if (resource.text !== undefined) contents.text = text("resource", "text", resource.text);
    else contents.blob = base64("resource", "blob", resource.blob);
    return block(annotate("resource", { type: "resource", resource: contents }, options));
  },
  content: (items) => {
    need(Array.isArray(items), "content", "pass an array of blocks (or strings, for text)", items);
    const list = items.map((item, i) => {
      if (typeof item === "string") return mcp.text(item);
      if (item !== null && typeof item === "object" && blocks.has(item)) return item;
      throw new TypeError(`mcp.content: item ${i} is not a block from mcp.text(), mcp.image(), ... (got ${kindOf(item)})`);
    });
    const result = Object.freeze({ content: list });
    contents.set(result, list);
    return result;
  },
});

// ---- progress(done, total?, message?) ------------------------------------
// Reaches the caller as notifications/progress when it asked for progress;
// a value that does not increase is not sent. Never waits.
let lastProgress = null;
let progressWanted = false;

async function progress(done, total, message) {
  if (typeof done !== "number" || !Number.isFinite(done)) {
    throw new TypeError(`progress(done, total, message): done must be a finite number (got ${kindOf(done)})`);
  }
  if (total !== undefined && total !== null && (typeof total !== "number" || !Number.isFinite(total))) {
    throw new TypeError(`progress(done, total, message): total must be a finite number (got ${kindOf(total)})`);
  }
  if (message !== undefined && message !== null && typeof message !== "string") {
    throw new TypeError(`progress(done, total, message): message must be a string (got ${kindOf(message)})`);
  }
  if (!progressWanted || settled || (lastProgress !== null && done <= lastProgress)) return;
  lastProgress = done;
  const update = { kind: "progress", progress: done };
  if (typeof total === "number") update.total = total;
  if (typeof message === "string") update.message = message;
  report(update);
}

for (const [name, value] of Object.entries({ mcp, progress })) {
  Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
}

// ---- the run ---------------------------------------------------------------

const { moduleDir, problem, prepared, announceReady } = await channel.start();

// The wrapper shares the first line with the code, so stack line numbers
// are the code's own.
function moduleSource(code) {
  return "export async function run(args) {" + code + "\n}\n//# sourceURL=tool.mjs\n";
}

// The module is a real file, so bare imports resolve: through `node_modules`
// next to it, a link to the read-only dependency cache.
async function importTool(dir, code, nodeModules) {
  if (nodeModules) symlinkSync(nodeModules, join(dir, "node_modules"));
  const modulePath = join(dir, "tool.mjs");
  writeFileSync(modulePath, moduleSource(code));
  return import(pathToFileURL(modulePath).href);
}

// Node's module loader starts slowly the first time: while no call is
// waiting, import the tool's module if it is known, else a file like it.
let preparedModule = null;
if (moduleDir && !problem) {
  try {
    if (typeof prepared?.code === "string") {
      preparedModule = await importTool(moduleDir, prepared.code, prepared.nodeModules);
    } else {
      const warm = join(moduleDir, "warm-up.mjs");
      writeFileSync(warm, "export async function run(args) {\n}\n");
      await (await import(pathToFileURL(warm).href)).run({});
    }
  } catch {
    // A module that does not load is the call's to report, on its own import.
    preparedModule = null;
  }
}

if (announceReady === true) report({ kind: "ready" });
const envelope = await channel.envelope();
progressWanted = envelope.progress === true;
const preparedFits =
  preparedModule !== null &&
  envelope.code === prepared.code &&
  (envelope.nodeModules ?? null) === (prepared.nodeModules ?? null) &&
  !(envelope.preload?.length > 0);

// Modules the executor adds to prepare the environment before the code runs
// (e.g. to route network calls): imported in order from the run's module
// directory; one that exports `prepare` gets its options.
async function preload(modules) {
  for (const { name, source, options } of modules ?? []) {
    if (!/^[A-Za-z0-9_-]+\.mjs$/.test(name)) throw new Error(`bad preload module name '${name}'`);
    const path = join(moduleDir, name);
    writeFileSync(path, source);
    const loaded = await import(pathToFileURL(path).href);
    if (typeof loaded.prepare === "function") await loaded.prepare(options);
  }
}

let toolModule = preparedFits ? preparedModule : undefined;
if (!toolModule) {
  try {
    if (problem) throw new Error(problem);
    await preload(envelope.preload);
  } catch (error) {
    settle({ ...threw(error), message: `the run could not be prepared: ${threw(error).message}` });
  }
}
if (!settled && !toolModule) {
  try {
    // A module prepared for other code keeps its files: this one gets a directory of its own.
    const dir = prepared ? mkdtempSync(join(moduleDir, "call-")) : moduleDir;
    toolModule = await importTool(dir, envelope.code, envelope.nodeModules);
  } catch (error) {
    settle(error instanceof SyntaxError ? { kind: "syntax", message: describe(error.message) } : threw(error));
  }
}

if (toolModule && typeof toolModule.run === "function") {
  try {
    settleResult(await toolModule.run(envelope.args));
  } catch (error) {
    settle(threw(error));
  }
}
