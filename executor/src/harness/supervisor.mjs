// The supervisor: trusted harness code inside a sandbox container, between
// the executor and the process that runs a tool's code (child.mjs). The code
// never runs here, and this process is out of the code's reach: the code can
// produce only outcomes it could produce honestly.
//
//   node --input-type=module -e <this> <uid>:<gid> <child source> [<tag>]
//
// It starts as root with no capability but CAP_SETUID and CAP_SETGID (and
// no-new-privileges), as PID 1 of a run container or through docker exec in
// a session. Then, before any code exists:
//  1. listeners for every catchable signal: the code's process runs as the
//     same user and may signal us. SIGUSR1 would open Node's inspector on
//     127.0.0.1:9229, which any process in the container could then drive;
//     the others would end us (as PID 1 we ignore SIGKILL and SIGSTOP from
//     inside the container anyway);
//  2. the child is spawned as <uid>:<gid>, so its Node start-up is done
//     before the envelope arrives;
//  3. we drop to <uid>:<gid> ourselves: no capability is left, and the kernel
//     marks us non-dumpable (fs.suid_dumpable 0 or 2), so processes of that
//     user cannot read our memory (/proc/PID/mem), open our fds
//     (/proc/PID/fd/N) or ptrace us. We check that it took (our /proc files
//     are then owned by root) and refuse to serve if not.
//
// The executor then writes ONE envelope on stdin: a header line
//   {"marker","timeoutMs","outputCap","resultCap","progress","bytes"}
// and `bytes` bytes for the child (code, args...), which we pass on unread
// (to a process as a frame, see child.mjs).
// The child cannot write to our stdout: its stdout, stderr and report
// channel are pipes to us. Everything we write on stdout is a record:
//   <marker><header JSON>\n<header.bytes bytes of payload, if any>
//   {"kind":"stdout"|"stderr","bytes"}     the code's output, up to outputCap
//   {"kind":"progress","progress","total"?,"message"?}
//                                          checked, increasing, rate-limited
//   {"kind":"done","status",...}           the outcome; nothing follows it
// The marker is fresh per call and never reaches the child. We stop the
// child at its timeout; the executor enforces it too. After `done`, as PID 1
// of a run container, we wait to be removed instead of exiting: our exit
// would start Docker's teardown while the outcome is on its way back.
//
// In a per-tool container (a third argument, the options JSON, and a
// fourth, the source of threads.mjs) we serve many calls, concurrently, over
// one Unix socket connection to the executor instead of stdin and stdout:
// the executor listens on `options.channel`, in a directory mounted for this
// container alone, and takes the first connection of the code's user, ours
// once we have dropped, before any code exists. Each frame (shared.mjs)
// names its call:
//   in:  {"call":id,"bytes"} + that call's envelope, as above
//        {"cancel":id}                     the executor gave up on the call
//   out: {"call":id,"bytes"} + records of that call, as above
// Each call still gets its own fresh marker and its own code's "process":
//  - realm "worker": a fresh worker thread in ONE process (threads.mjs),
//    spawned as <uid>:<gid> before we drop; calls are told apart by id.
//  - realm "process": a fresh child.mjs process per call, pre-spawned (we
//    already run as <uid>:<gid> then, so without a change of user).
// Either way a call's code reaches only its own records through us.
// Written for any stock Node >= 18.
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { readFileSync, readSync, statSync } from "node:fs";
import { connect } from "node:net";
import { constants } from "node:os";

const [idsArgument, childSource, optionsArgument, threadsSource] = process.argv.slice(1);

// Exit code for "the harness itself failed"; the executor reports it as
// its own failure, never as the code's.
const HARNESS_FAILED = 70;

// Progress: a burst of PROGRESS_BURST reports, then one per
// PROGRESS_REFILL_MS; faster reports are coalesced (the latest wins), and
// the last one is always sent before the outcome.
const PROGRESS_BURST = 10;
const PROGRESS_REFILL_MS = 50;
const PROGRESS_MESSAGE_CHARS = 1000;

// The child's report lines (progress, errors) are small; results come as
// a payload of their own, capped by the envelope's resultCap.
const REPORT_LINE_BYTES = 1 << 20;

// How long a run container's supervisor waits after `done` for the
// executor to remove it (it does within milliseconds) before it exits on
// its own: with the executor gone, or a record stream that broke (the
// executor then waits for our exit).
const REMOVAL_WAIT_MS = 5000;

// A spare that has not said it is ready this long after its spawn is
// killed: a Node start-up that could create only some of its threads (the
// container's pids limit) can hang instead of exiting.
const SPARE_START_MS = 10000;

// A call that got no realm says so in its `done` record: the executor then
// retires its per-tool container, whose limits may stay full for good.
const refused = (outcome) => ({ ...outcome, realmRefused: true });

// Why a call got no process (processRealm): none could be spawned, as if
// the container's limits had killed it; or one was spawned but never said
// it was ready.
const NO_PROCESS = { outcome: refused(exited(null, "SIGKILL")) };
const NOT_STARTED = {
  outcome: refused({
    status: "bad_result",
    message:
      `the code's process did not get ready within ${SPARE_START_MS} ms: the container's process limit ` +
      "was full, or the tool's code does work outside its function body (move it inside)",
  }),
};

// The executor's channel socket exists before we start; these retries only
// cover a mount that is slow to appear.
const CHANNEL_ATTEMPTS = 50;
const CHANNEL_RETRY_MS = 20;

// What Node prints when it cannot start a thread: the container's pids limit.
const NO_THREAD = "pthread_create: Resource temporarily unavailable";

const CATCHABLE_SIGNALS = [
  "SIGHUP", "SIGINT", "SIGQUIT", "SIGTRAP", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
  "SIGSTKFLT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM",
  "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
];

function fail(message) {
  process.stderr.write(`dynamic-mcp supervisor: ${message}\n`, () => process.exit(HARNESS_FAILED));
}

for (const signal of CATCHABLE_SIGNALS) {
  try {
    process.on(signal, () => {});
  } catch {}
}

const ids = /^(\d+):(\d+)$/.exec(idsArgument ?? "");
// A session's exec may name itself with a `VAR=value` tag instead of options.
const perTool = optionsArgument?.startsWith("{") ? perToolOptions(optionsArgument) : null;
if (!ids || typeof childSource !== "string") {
  fail("usage: <uid>:<gid> <child source> [<per-tool options> <threads source>]");
} else if (Number(ids[1]) === 0 || Number(ids[2]) === 0) {
  fail("the code must not run as root");
} else if (perTool === false) {
  fail("unreadable per-tool options");
} else if (perTool) {
  startPerTool(Number(ids[1]), Number(ids[2]), perTool);
} else {
  start(Number(ids[1]), Number(ids[2]));
}

function perToolOptions(text) {
  try {
    const options = JSON.parse(text);
    if (!["worker", "process"].includes(options.realm)) return false;
    if (typeof options.channel !== "string") return false;
    if (options.realm === "worker" && typeof threadsSource !== "string") return false;
    return options;
  } catch {
    return false;
  }
}

function start(uid, gid) {
  const exit = () => process.exit(0);
  // PID 1 of a run container, not a command in a session: what the code
  // left running dies now, as it would with our exit (kill(-1) spares PID 1).
  const waitForRemoval = () => {
    try {
      process.kill(-1, "SIGKILL");
    } catch {
      // Nothing was left running.
    }
    setTimeout(exit, REMOVAL_WAIT_MS);
  };
  const afterRecords = process.pid === 1 ? waitForRemoval : exit;
  const child = spawnChild(uid, gid);
  if (!child) return fail("cannot spawn the code's process");
  if (!dropTo(uid, gid, child)) return;
  const io = {
    onEnvelope: readEnvelope,
    write: (bytes) => process.stdout.write(bytes),
    // Exit only once the records are flushed, and as a container's PID 1
    // only when the executor has not removed the container in time.
    ended: () => process.stdout.write("", afterRecords),
    broken: fail,
  };
  serve(child, prepareChild(child), io);
}

// Drops to <uid>:<gid> (after `child`, if any, was spawned as that user)
// and checks that the code's processes cannot reach us.
function dropTo(uid, gid, child) {
  const refuse = (message) => {
    child?.kill("SIGKILL");
    fail(message);
    return false;
  };
  if (process.getuid() !== 0) {
    return refuse("must start as root with CAP_SETUID and CAP_SETGID, to run the code as another user");
  }
  try {
    process.setgroups([]);
    process.setgid(gid);
    process.setuid(uid);
  } catch (error) {
    return refuse(`cannot drop to ${uid}:${gid}: ${error.message}`);
  }
  const exposed = reachable(uid, gid);
  return exposed ? refuse(exposed) : true;
}

// Made now, as the code's user: the child writes the tool's module there,
// and warms up Node's module loader in it before the envelope arrives.
// `prepared`: the tool's code, in a per-tool container (child.mjs).
// `announceReady`: the child reports {"kind":"ready"} once it waits for its envelope.
function prepareChild(child, prepared = null, announceReady = false) {
  const { moduleDir, problem } = runDirectory();
  const start = Buffer.from(JSON.stringify({ moduleDir, problem, prepared, announceReady }), "utf8");
  child.stdio[3].write(frameBytes({}, start));
  return moduleDir;
}

// Without uid and gid: as ourselves (after the drop, the code's user).
function spawnChild(uid, gid) {
  const child = spawnCode(["--input-type=module", "-e", childSource], uid, gid);
  if (child) {
    // A frame after the one with its module directory: the child reads the
    // executor's bytes for it once they are whole, not when the pipe closes.
    child.sendEnvelope = (body) => child.stdio[3].end(frameBytes({}, body));
  }
  return child;
}

// The child, or null when it could not be spawned at all: spawn() throws
// for some errors, and leaves no pipes for EMFILE and ENFILE. Its "error"
// (then, or EAGAIN later) is for the caller's listeners; it never ends us.
function spawnCode(args, uid, gid) {
  const user = uid === undefined ? {} : { uid, gid };
  let child;
  try {
    child = spawn(process.execPath, args, {
      ...user,
      env: { ...process.env, HOME: homeOf(uid ?? process.getuid()) },
      // 0: nothing to read; 1, 2: output; 3: the envelope in; 4: reports out.
      stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
    });
  } catch {
    return null;
  }
  child.on("error", () => {});
  if (!child.stdio?.[4]) return null;
  // A pipe to a process that died fails (EPIPE on the envelope): that is
  // the end of that process's call, which its exit reports, never ours.
  for (const pipe of child.stdio) pipe?.on("error", () => {});
  return child;
}

// The home directory /etc/passwd gives `uid`, as Docker would; else "/".
function homeOf(uid) {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const fields = line.split(":");
      if (fields.length >= 6 && Number(fields[2]) === uid && fields[5]) return fields[5];
    }
  } catch {}
  return "/";
}

// Why the code's process could still reach us, or null.
function reachable(uid, gid) {
  if (process.getuid() !== uid || process.geteuid() !== uid || process.getgid() !== gid || process.getegid() !== gid) {
    return "the credentials did not change";
  }
  const status = readFileSync("/proc/self/status", "utf8");
  for (const set of ["CapPrm", "CapEff", "CapAmb"]) {
    const value = new RegExp(`^${set}:\\s*([0-9a-f]+)$`, "m").exec(status)?.[1];
    if (!value || /[^0]/.test(value)) return `capabilities are left (${set} ${value})`;
  }
  // A dumpable process owns its /proc files; a non-dumpable one's belong to root.
  if (statSync("/proc/self/mem").uid !== 0) {
    return "this process stayed dumpable (is fs.suid_dumpable 1 on the host?), so the code could read its memory";
  }
  return null;
}

// Serves one call by `child` (a process, or a worker thread in the host;
// both have `sendEnvelope`, which hands over the call's envelope);
// `io` says where its envelope comes from and its records go. Returns what
// ends the call early.
function serve(child, moduleDir, io) {
  let call = null;
  let finished = false;
  let childExited = null;
  let threadRefused = false;
  const early = { stdout: [], stderr: [] };
  const relayed = { stdout: 0, stderr: 0 };
  const dropped = { stdout: 0, stderr: 0 };
  const progress = { last: null, pending: null, tokens: PROGRESS_BURST, refilled: Date.now(), timer: null };
  let timeout = null;

  function record(header, payload) {
    const head = Buffer.from(call.marker + JSON.stringify(header) + "\n", "utf8");
    io.write(payload ? Buffer.concat([head, payload]) : head);
  }

  function output(kind, chunk) {
    if (finished) return;
    if (kind === "stderr" && chunk.includes(NO_THREAD)) threadRefused = true;
    if (!call) {
      early[kind].push(chunk);
      return;
    }
    const room = Math.max(0, call.outputCap - relayed[kind]);
    const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
    if (kept.length > 0) {
      record({ kind, bytes: kept.length }, kept);
      relayed[kind] += kept.length;
    }
    dropped[kind] += chunk.length - kept.length;
  }

  // Reports from the child: header lines, a result with its payload.
  let reports = Buffer.alloc(0);
  let payload = null;
  function onReports(chunk) {
    if (finished) return;
    reports = reports.length ? Buffer.concat([reports, chunk]) : chunk;
    while (!finished) {
      if (payload) {
        const need = payload.bytes - payload.parts.reduce((n, p) => n + p.length, 0);
        if (reports.length === 0) return;
        const part = reports.subarray(0, need);
        payload.parts.push(part);
        reports = reports.subarray(part.length);
        if (part.length < need) return;
        const { format, parts } = payload;
        payload = null;
        finish({ status: "ok", format }, Buffer.concat(parts));
        return;
      }
      const end = reports.indexOf(10);
      if (end < 0) {
        if (reports.length > REPORT_LINE_BYTES) refuse("a report line too long");
        return;
      }
      const line = reports.subarray(0, end);
      reports = reports.subarray(end + 1);
      let report;
      try {
        report = JSON.parse(line.toString("utf8"));
      } catch {
        refuse("a report that is not JSON");
        return;
      }
      onReport(report);
    }
  }

  function onReport(report) {
    const text = (value, max) => (typeof value === "string" ? value.slice(0, max) : "");
    switch (report?.kind) {
      case "progress":
        onProgress(report);
        return;
      case "result": {
        const bytes = report.bytes;
        if (!["json", "content"].includes(report.format) || !Number.isSafeInteger(bytes) || bytes < 0) {
          refuse("a result report without a format and size");
        } else if (call && bytes > call.resultCap) {
          finish({ status: "bad_result", message: `result too large (over ${call.resultCap} bytes)` });
        } else if (bytes === 0) {
          refuse("an empty result");
        } else {
          payload = { format: report.format, bytes, parts: [] };
        }
        return;
      }
      case "threw":
        finish({ status: "threw", name: text(report.name, 1000), message: text(report.message, 32768), stack: text(report.stack, 32768) });
        return;
      case "syntax":
        finish({ status: "syntax", message: text(report.message, 32768) });
        return;
      case "bad_result":
        finish({ status: "bad_result", message: text(report.message, 32768) });
        return;
      default:
        refuse("a report of an unknown kind");
    }
  }

  // The code's process wrote to its report channel what the harness never does.
  function refuse(what) {
    finish({ status: "bad_result", message: `the code's process sent ${what} on the harness's report channel` });
  }

  function onProgress(report) {
    if (!call || !call.progress) return;
    const { progress: done, total, message } = report;
    if (typeof done !== "number" || !Number.isFinite(done)) return;
    if (total !== undefined && (typeof total !== "number" || !Number.isFinite(total))) return;
    if (message !== undefined && typeof message !== "string") return;
    if (progress.last !== null && done <= progress.last) return;
    progress.last = done;
    progress.pending = { kind: "progress", progress: done };
    if (total !== undefined) progress.pending.total = total;
    if (message !== undefined) progress.pending.message = message.slice(0, PROGRESS_MESSAGE_CHARS);
    pumpProgress();
  }

  function pumpProgress() {
    const now = Date.now();
    const earned = Math.floor((now - progress.refilled) / PROGRESS_REFILL_MS);
    if (earned > 0) {
      progress.tokens = Math.min(PROGRESS_BURST, progress.tokens + earned);
      progress.refilled += earned * PROGRESS_REFILL_MS;
    }
    if (!progress.pending) return;
    if (progress.tokens >= 1) {
      progress.tokens -= 1;
      record(progress.pending);
      progress.pending = null;
    } else if (!progress.timer) {
      progress.timer = setTimeout(() => {
        progress.timer = null;
        if (!finished) pumpProgress();
      }, PROGRESS_REFILL_MS);
    }
  }

  // Reads what is already in a pipe, without waiting: once the child has
  // ended or reported its outcome, all it wrote before is there. At most what
  // the call may keep and a pipe's worth more: a process the code left
  // behind may write for ever.
  function drain(stream, onChunk) {
    const fd = stream?._handle?.fd;
    if (typeof fd !== "number" || fd < 0) return;
    const buffer = Buffer.allocUnsafe(1 << 16);
    let left = (call ? Math.max(call.outputCap, call.resultCap) : 0) + REPORT_LINE_BYTES;
    for (; left > 0; left -= buffer.length) {
      let read;
      try {
        read = readSync(fd, buffer, 0, buffer.length, null);
      } catch {
        return;
      }
      if (read <= 0) return;
      onChunk(Buffer.from(buffer.subarray(0, read)));
    }
  }

  function finish(done, resultPayload) {
    if (finished) return;
    // What it wrote stays in the pipes; what it would write next must not.
    if (childExited === null) child.kill("SIGKILL");
    drain(child.stdout, (chunk) => output("stdout", chunk));
    drain(child.stderr, (chunk) => output("stderr", chunk));
    // A process the code left behind writes to its output pipes no more.
    child.stdout.destroy?.();
    child.stderr.destroy?.();
    finished = true;
    clearTimeout(timeout);
    clearTimeout(progress.timer);
    if (progress.pending) record(progress.pending);
    done.kind = "done";
    done.stdoutDropped = dropped.stdout;
    done.stderrDropped = dropped.stderr;
    if (resultPayload) done.bytes = resultPayload.length;
    record(done, resultPayload);
    removeDir(moduleDir);
    io.ended();
  }

  // How the child's exit ends the call. A process that could not start its
  // threads (Node then exits with 1), or a worker that could not start at
  // all, was stopped by the pids limit.
  function ending(code, signal) {
    drain(child.stderr, (chunk) => output("stderr", chunk));
    const noRealm = child.refused || (threadRefused && code !== 0);
    return noRealm ? refused(exited(null, "SIGKILL")) : exited(code, signal);
  }

  child.stdout.on("data", (chunk) => output("stdout", chunk));
  child.stderr.on("data", (chunk) => output("stderr", chunk));
  child.stdio[4].on("data", onReports);
  child.on("error", (error) => {
    if (!call) {
      io.broken(`cannot start the code's process: ${error.message}`);
    } else if (child.pid === undefined && !finished) {
      // It never started (EAGAIN: the container's process limit): it ends
      // as if that limit had killed it.
      finish(refused(exited(null, "SIGKILL")));
    }
  });
  child.on("exit", (code, signal) => {
    childExited = { code, signal };
    if (!call) {
      // Nothing ran yet: this container cannot serve a call.
      io.broken(`the code's process ended before any call (${signal ?? code})`);
      return;
    }
    // Its last reports may still be in the pipe: read them first.
    drain(child.stdio[4], onReports);
    if (finished) return;
    finish(ending(code, signal));
  });

  io.onEnvelope((header, body) => {
    call = header;
    for (const kind of ["stdout", "stderr"]) for (const chunk of early[kind].splice(0)) output(kind, chunk);
    child.sendEnvelope(body);
    timeout = setTimeout(() => finish({ status: "timed_out" }), call.timeoutMs);
    if (childExited) {
      drain(child.stdio[4], onReports);
      if (!finished) finish(ending(childExited.code, childExited.signal));
    }
  });
  return { cancel: () => finish({ status: "timed_out" }) };
}

// ---- per-tool containers: many calls over one channel ----------------------

function startPerTool(uid, gid, options) {
  const hostOptions = JSON.stringify({ heapMb: options.heapMb, spares: options.spares });
  const count = (value) => (Number.isSafeInteger(value) && value > 0 ? value : 1);
  if (options.realm === "worker") {
    const host = spawnCode(["--input-type=module", "-e", threadsSource, childSource, hostOptions], uid, gid);
    if (!host) return fail("cannot spawn the worker host");
    if (!dropTo(uid, gid, host)) return;
    const early = (code, signal) => fail(`the worker host ended (${signal ?? code}) before the channel was open`);
    const unstarted = (error) => fail(`cannot start the worker host: ${error.message}`);
    host.once("exit", early);
    host.once("error", unstarted);
    openChannel(options.channel, (channel) => {
      host.off("exit", early);
      host.off("error", unstarted);
      serveMany(workerRealm(host, channel), channel);
    });
  } else if (dropTo(uid, gid, null)) {
    openChannel(options.channel, (channel) =>
      serveMany(processRealm(count(options.spares), count(options.maxCalls)), channel));
  }
}

// Connects to the executor's channel (as the code's user: the socket is
// that user's alone), retrying briefly.
function openChannel(path, onOpen, attempt = 1) {
  const socket = connect(path);
  const retry = (error) => {
    socket.destroy();
    if (attempt >= CHANNEL_ATTEMPTS) fail(`cannot connect to the executor's channel ${path}: ${error.message}`);
    else setTimeout(() => openChannel(path, onOpen, attempt + 1), CHANNEL_RETRY_MS);
  };
  socket.once("error", retry);
  socket.once("connect", () => {
    socket.off("error", retry);
    // A broken channel ends in "close", below.
    socket.on("error", () => {});
    onOpen(socket);
  });
}

// Frames from the executor on `channel`, each call served as in a run,
// each record framed with its call's id.
function serveMany(realm, channel) {
  const calls = new Map();
  const onData = frameReader(
    (header, bytes) => {
      const id = header.call ?? header.cancel;
      if (!Number.isSafeInteger(id) || id < 0) {
        fail("the executor sent a frame without a call id");
        return false;
      }
      if (header.cancel !== undefined) {
        calls.get(id)?.cancel();
        return true;
      }
      let envelope;
      try {
        if (calls.has(id)) throw new Error(`call ${id} is already running`);
        envelope = envelopeOf(bytes);
      } catch (error) {
        fail(`unreadable call from the executor: ${error.message}`);
        return false;
      }
      const io = {
        onEnvelope: (onEnvelope) => onEnvelope(envelope.header, envelope.body),
        write: (record) => channel.write(frameBytes({ call: id }, record)),
        ended: () => calls.delete(id),
        broken: fail,
      };
      // Until its realm is there, a cancel only stops the wait: the executor
      // has given up on the call already.
      let answered = false;
      const stopWaiting = realm.take(envelope.body, (given) => {
        answered = true;
        if (given.child) calls.set(id, serve(given.child, given.moduleDir, io));
        else refuse(envelope.header, given, io);
      });
      if (!answered) calls.set(id, { cancel: () => (stopWaiting(), calls.delete(id)) });
      return true;
    },
    (message) => fail(`unreadable frame from the executor: ${message}`),
  );
  channel.on("data", onData);
  // The executor retired this container (or is gone).
  channel.on("close", () => process.exit(0));
}

// Ends a call that got no process with the outcome `given` says.
function refuse(header, given, io) {
  const done = { kind: "done", ...given.outcome, stdoutDropped: 0, stderrDropped: 0 };
  io.write(Buffer.from(header.marker + JSON.stringify(done) + "\n", "utf8"));
  io.ended();
}

// A call's bytes: the envelope of a run (header line, then the child's part).
function envelopeOf(bytes) {
  const end = bytes.indexOf(10);
  if (end < 0) throw new Error("no header line");
  const header = checkedHeader(JSON.parse(bytes.subarray(0, end).toString("utf8")));
  const body = bytes.subarray(end + 1);
  if (body.length !== header.bytes) throw new Error("the child's part is not `bytes` long");
  return { header, body };
}

// A fresh child.mjs process per call, a few spawned ahead of the calls.
// Spares import the tool's code of the last call ahead (child.mjs). A call
// gets a process that has said it is ready, the first there is, or null
// when none could start for it. At most
// `maxCalls` + `spares` processes are alive at once, the container's pids
// limit being sized for that (config.rs): one killed at its call's end
// counts until it has exited, so a call may wait for it (the executor's
// deadline bounds the wait) rather than fail to start a process.
function processRealm(spares, maxCalls) {
  const most = maxCalls + spares;
  // Spawned and not yet given a call: ready, or still starting.
  const unclaimed = [];
  const waiting = [];
  let alive = 0;
  let prepared = null;
  // A spare, or null when none could be spawned.
  const spawnCounted = () => {
    const child = spawnChild();
    if (!child) return null;
    alive += 1;
    const realm = { child, moduleDir: null, ready: false, served: false, stuck: false };
    const giveUp = () => {
      realm.stuck = true;
      child.kill("SIGKILL");
    };
    const stuck = setTimeout(giveUp, SPARE_START_MS);
    let counted = true;
    const release = () => {
      clearTimeout(stuck);
      if (!counted) return;
      counted = false;
      alive -= 1;
      if (realm.served) {
        pump();
        return;
      }
      // Nothing reads an unserved spare's pipes any more (one may be paused).
      for (const pipe of child.stdio) pipe?.destroy();
      removeDir(realm.moduleDir);
      const at = unclaimed.indexOf(realm);
      if (at >= 0) unclaimed.splice(at, 1);
      // It did not start: a call that has no other process on the way for
      // it ends now.
      const starting = unclaimed.filter((other) => !other.ready).length;
      if (!realm.ready && waiting.length > starting) waiting.shift()(realm.stuck ? NOT_STARTED : NO_PROCESS);
      // A spare that could not even start must not become a busy loop.
      setTimeout(pump, SPARE_RETRY_MS);
    };
    child.once("exit", release);
    // A process that never started never exits. Otherwise, until a call
    // serves it, an error is only this spare's end.
    child.on("error", () => {
      if (child.pid === undefined) release();
    });
    whenReady(
      child,
      () => {
        clearTimeout(stuck);
        realm.ready = true;
        // A call waiting for it starts now: its replacement waits, as a taken spare's does.
        pump(SPARE_REFILL_WAIT_MS);
      },
      giveUp,
    );
    realm.moduleDir = prepareChild(child, prepared, true);
    return realm;
  };
  const live = ({ child }) => child.exitCode === null && child.signalCode === null;
  const refill = coalescedTask(() => {
    while (waiting.length === 0 && unclaimed.length < spares && alive < most) {
      const realm = spawnCounted();
      if (!realm) return refill.within(SPARE_RETRY_MS);
      unclaimed.push(realm);
    }
  });
  // Calls first, then spares: at the latest `refillWithin` ms from now.
  function pump(refillWithin = 0) {
    for (let at = unclaimed.length - 1; at >= 0; at--) if (!live(unclaimed[at])) unclaimed.splice(at, 1);
    while (waiting.length > 0) {
      const at = unclaimed.findIndex((realm) => realm.ready);
      if (at < 0) break;
      const [realm] = unclaimed.splice(at, 1);
      realm.served = true;
      // Flows from the next tick: the call's serve() listens before then.
      realm.child.stdio[4].resume();
      waiting.shift()(realm);
    }
    // Each call still waiting has a process starting for it, as far as the limit allows.
    while (unclaimed.length < waiting.length && alive < most) {
      const realm = spawnCounted();
      if (realm) unclaimed.push(realm);
      else waiting.shift()(NO_PROCESS);
    }
    refill.within(refillWithin);
  }
  refill.within(0);
  return {
    take(childPart, onRealm) {
      prepared = preparable(childPart) ?? prepared;
      waiting.push(onRealm);
      // Its process's exit (release) refills at once; a longer call's, after a while.
      pump(SPARE_REFILL_WAIT_MS);
      return () => {
        const at = waiting.indexOf(onRealm);
        if (at >= 0) waiting.splice(at, 1);
      };
    },
  };
}

// Calls `onReady` once `child` reports {"kind":"ready"}, its first line;
// then its report pipe is paused until a call is given to it. Any other
// first line (the code's top level ran early?) calls `onOther`.
function whenReady(child, onReady, onOther) {
  const pipe = child.stdio[4];
  let line = Buffer.alloc(0);
  const onData = (chunk) => {
    line = Buffer.concat([line, chunk]);
    const end = line.indexOf(10);
    if (end < 0 && line.length <= REPORT_LINE_BYTES) return;
    pipe.off("data", onData);
    pipe.pause();
    let report = null;
    try {
      report = JSON.parse(line.subarray(0, end).toString("utf8"));
    } catch {}
    if (end === line.length - 1 && report?.kind === "ready") onReady();
    else onOther();
  };
  pipe.on("data", onData);
}

// Worker threads in one host process (threads.mjs); each call's "child" is
// a stand-in for its worker, fed by the host's frames for its id.
function workerRealm(host, channel) {
  const calls = new Map();
  const toHost = host.stdio[3];
  // A host that died is reported by its "exit", below.
  toHost.on("error", () => {});
  host.stdio[4].on(
    "data",
    frameReader(
      (header, payload) => {
        const child = calls.get(header.call);
        if (!child) return true;
        if (header.exit !== undefined) {
          calls.delete(header.call);
          child.refused = header.refused === true;
          child.emit("exit", Number.isSafeInteger(header.exit) ? header.exit : 1, null);
        } else if (header.stream === "stdout" || header.stream === "stderr") {
          child[header.stream].emit("data", payload);
        } else if (header.stream === "report") {
          child.stdio[4].emit("data", payload);
        }
        return true;
      },
      (message) => fail(`the worker host sent ${message}`),
    ),
  );
  // The host's own output is no call's: its failures reach the executor's log.
  host.stdout.resume();
  host.stderr.on("data", (chunk) => process.stderr.write(chunk));
  host.on("error", (error) => fail(`cannot start the worker host: ${error.message}`));
  host.on("exit", (code, signal) => {
    for (const child of calls.values()) child.emit("exit", code, signal);
    calls.clear();
    channel.write("", () => fail(`the worker host ended (${signal ?? code})`));
  });
  let nextCall = 0;
  return {
    take(_childPart, onRealm) {
      const id = nextCall++;
      const child = new EventEmitter();
      child.stdout = new EventEmitter();
      child.stderr = new EventEmitter();
      child.sendEnvelope = (body) => toHost.write(frameBytes({ op: "call", call: id }, body));
      child.stdio = [null, child.stdout, child.stderr, null, new EventEmitter()];
      child.kill = () => toHost.write(frameBytes({ op: "stop", call: id }));
      calls.set(id, child);
      onRealm({ child, moduleDir: null });
      return () => {};
    },
  };
}

// A shell's exit code: 128 + the signal's number for a killed process.
function exited(code, signal) {
  if (!signal) return { status: "exited", exitCode: code };
  return { status: "exited", exitCode: 128 + (constants.signals[signal] ?? 0), signal };
}

// One envelope from stdin: a header line, then `bytes` bytes for the child.
function readEnvelope(onEnvelope) {
  let received = false;
  const onData = frameReader(
    (header, body) => {
      received = true;
      process.stdin.off("data", onData);
      process.stdin.pause();
      try {
        header = checkedHeader(header);
      } catch (error) {
        fail(`unreadable envelope header: ${error.message}`);
        return false;
      }
      onEnvelope(header, body);
      return false;
    },
    (message) => fail(`unreadable envelope: ${message}`),
  );
  process.stdin.on("data", onData);
  // Stdin closed without a call (a warm container being removed): nothing to do.
  process.stdin.on("end", () => {
    if (!received) process.exit(0);
  });
}

function checkedHeader(header) {
  const count = (name) => {
    if (!Number.isSafeInteger(header?.[name]) || header[name] < 0) throw new Error(`${name} is not a count`);
  };
  if (typeof header?.marker !== "string" || header.marker.length < 16) throw new Error("no marker");
  for (const name of ["timeoutMs", "outputCap", "resultCap", "bytes"]) count(name);
  return { ...header, progress: header.progress === true };
}
