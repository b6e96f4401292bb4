// The process that runs a per-tool container's calls, each in a fresh
// worker thread used once: its own V8 isolate and JS realm, module graph and
// globals, with its heap capped (resourceLimits). Started by supervisor.mjs
// as the sandbox user, like child.mjs in a run; child.mjs is each worker's
// module. Nothing here is secret: the code of every call runs in this
// process and can read all of it (/proc/self/mem), other calls' arguments
// and results included — the supervisor and the container are the
// boundaries (docs/SECURITY.md).
//
//   node --input-type=module -e <shared.mjs + this> <child source> <options JSON>
//     options: {"heapMb": n, "spares": n}
//
// Spares are started with the code of the last call (`prepared`, see
// child.mjs), so that the next call finds its module imported.
//
// fd 3 (from the supervisor), frames:
//   {"op":"call","call":id} + the child's envelope    run a call in a spare worker
//   {"op":"stop","call":id}                           end it (timeout, outcome in)
// fd 4 (to the supervisor), frames:
//   {"call":id,"stream":"stdout"|"stderr"|"report"} + bytes
//   {"call":id,"exit":code}                           the call's worker has ended
//   {"call":id,"exit":137,"refused":true}             no worker could start for it
// Written for any stock Node >= 18.
import { Socket } from "node:net";
import { Worker } from "node:worker_threads";

const [childSource, optionsArgument] = process.argv.slice(1);
const options = JSON.parse(optionsArgument ?? "{}");
const heapMb = Number.isSafeInteger(options.heapMb) && options.heapMb >= 8 ? options.heapMb : 64;
const spareCount = Number.isSafeInteger(options.spares) && options.spares >= 1 ? options.spares : 1;
const childUrl = new URL("data:text/javascript," + encodeURIComponent(childSource));

// What Node's own out-of-heap abort exits with; the executor reads it as
// the run's resource limit.
const OUT_OF_HEAP_EXIT_CODE = 134;
// What a process killed by the container's limits exits with (SIGKILL).
const PIDS_LIMIT_EXIT_CODE = 137;

const toSupervisor = new Socket({ fd: 4, readable: false, writable: true });
const fromSupervisor = new Socket({ fd: 3, readable: true, writable: false });
const send = (header, payload) => toSupervisor.write(frameBytes(header, payload));
// The supervisor gone: "end" below ends us.
toSupervisor.on("error", () => {});

const spares = [];
const running = new Map();
// The tool's code as the last call brought it: spares import it ahead.
let prepared = null;

// A spare worker, or null when none can start: Node throws when it cannot
// create the thread (the container's pids limit).
function startWorker() {
  const { moduleDir, problem } = runDirectory();
  let worker;
  try {
    worker = new Worker(childUrl, {
      workerData: { moduleDir, problem, prepared },
      // Output goes through the parent port (child.mjs); these catch the rest.
      stdout: true,
      stderr: true,
      env: { ...process.env },
      resourceLimits: {
        maxOldGenerationSizeMb: heapMb,
        maxYoungGenerationSizeMb: Math.max(1, Math.min(16, Math.floor(heapMb / 8))),
      },
    });
  } catch {
    removeDir(moduleDir);
    return null;
  }
  const slot = { worker, moduleDir, call: null, outOfHeap: false };
  worker.on("message", (message) => {
    if (slot.call === null) return;
    const stream = message?.stream;
    if (!["stdout", "stderr", "report"].includes(stream)) return;
    const data = message.data;
    if (!(data instanceof Uint8Array) || data.length === 0) return;
    send({ call: slot.call, stream }, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  for (const stream of ["stdout", "stderr"]) {
    worker[stream].on("data", (chunk) => {
      if (slot.call !== null) send({ call: slot.call, stream }, chunk);
    });
  }
  worker.on("error", (error) => {
    if (error?.code === "ERR_WORKER_OUT_OF_MEMORY") slot.outOfHeap = true;
  });
  worker.on("exit", (code) => {
    const index = spares.indexOf(slot);
    if (index >= 0) spares.splice(index, 1);
    if (slot.call !== null) {
      running.delete(slot.call);
      send({ call: slot.call, exit: slot.outOfHeap ? OUT_OF_HEAP_EXIT_CODE : code });
    }
    removeDir(moduleDir);
    refill.within(slot.call === null ? SPARE_RETRY_MS : 0);
  });
  return slot;
}

const refill = coalescedTask(() => {
  while (spares.length < spareCount) {
    const slot = startWorker();
    if (!slot) return refill.within(SPARE_RETRY_MS);
    spares.push(slot);
  }
});

function onFrame(header, payload) {
  const call = header.call;
  if (!Number.isSafeInteger(call)) return;
  if (header.op === "call") {
    const slot = spares.shift() ?? startWorker();
    if (!slot) {
      // No thread could start for it: it ends as that limit's, as a process would.
      send({ call, exit: PIDS_LIMIT_EXIT_CODE, refused: true });
      return;
    }
    slot.call = call;
    running.set(call, slot);
    // A copy of its own: the frame's buffer may hold other calls' bytes.
    slot.worker.postMessage(new Uint8Array(payload));
    prepared = preparable(payload) ?? prepared;
    // Its worker's exit refills at once; a longer call's, after a while.
    refill.within(SPARE_REFILL_WAIT_MS);
  } else if (header.op === "stop") {
    running.get(call)?.worker.terminate();
  }
}

fromSupervisor.on("data", frameReader(onFrame, (message) => {
  process.stderr.write(`dynamic-mcp threads: ${message}\n`, () => process.exit(70));
}));
// The supervisor is gone: so is every call.
fromSupervisor.on("end", () => process.exit(0));
refill.within(0);
