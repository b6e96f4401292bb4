// What supervisor.mjs, threads.mjs and child.mjs share, prepended to each
// (import declarations may stand anywhere at a module's top level).
//
// Frames: a JSON header line, then `header.bytes` bytes (none without
// `bytes`). The framing of the single-call envelope, of the supervisor's
// pipe to the code's process, and of every channel of a per-tool
// container: the executor's stdin and stdout, and the pipes between the
// supervisor and threads.mjs.
import { mkdtempSync as makeTempDir, rmSync as removeTree } from "node:fs";
import { tmpdir as tempRoot } from "node:os";
import { join as joinPath } from "node:path";

const FRAME_HEADER_BYTES = 1 << 16;

// Calls onFrame(header, payload) for each whole frame pushed in; onBad(message)
// once, for a header that is too long or not JSON, after which nothing is read.
// Chunks are joined once a header or payload is whole, never per chunk.
function frameReader(onFrame, onBad) {
  const chunks = [];
  let length = 0;
  // Bytes of `chunks` already searched for the header's newline, in vain.
  let searched = 0;
  let header = null;
  let broken = false;
  const newlineAt = () => {
    let offset = 0;
    for (const chunk of chunks) {
      if (offset + chunk.length > searched) {
        const at = chunk.indexOf(10, Math.max(0, searched - offset));
        if (at >= 0) return offset + at;
      }
      offset += chunk.length;
    }
    searched = length;
    return -1;
  };
  // The first `count` bytes, with `skip` more dropped after them.
  const take = (count, skip) => {
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const rest = all.subarray(count + skip);
    chunks.length = 0;
    if (rest.length > 0) chunks.push(rest);
    length = rest.length;
    searched = 0;
    return all.subarray(0, count);
  };
  return (chunk) => {
    if (broken) return;
    chunks.push(chunk);
    length += chunk.length;
    for (;;) {
      if (!header) {
        const end = newlineAt();
        if (end < 0) {
          if (length > FRAME_HEADER_BYTES) {
            broken = true;
            onBad("a frame header is too long");
          }
          return;
        }
        try {
          header = JSON.parse(take(end, 1).toString("utf8"));
          if (header === null || typeof header !== "object") throw new Error("not an object");
        } catch (error) {
          broken = true;
          onBad(`unreadable frame header: ${error.message}`);
          return;
        }
      }
      const bytes = Number.isSafeInteger(header.bytes) && header.bytes > 0 ? header.bytes : 0;
      if (length < bytes) return;
      const payload = take(bytes, 0);
      const whole = header;
      header = null;
      if (onFrame(whole, payload) === false) {
        broken = true;
        return;
      }
    }
  };
}

// One frame's bytes, ready for a single write.
function frameBytes(header, payload) {
  const head = Buffer.from(JSON.stringify(payload ? { ...header, bytes: payload.length } : header) + "\n", "utf8");
  return payload ? Buffer.concat([head, payload]) : head;
}

// A call's own directory, made as the code's user: the code's module is
// written there. A full /tmp becomes the call's error (`problem`), through
// the code's process, rather than the harness's failure.
function runDirectory() {
  try {
    return { moduleDir: makeTempDir(joinPath(tempRoot(), "dynamic-mcp-")), problem: null };
  } catch (error) {
    return { moduleDir: null, problem: `cannot create the run's directory in ${tempRoot()}: ${error.message}` };
  }
}

// Removes a run's directory, if any; one already gone, or not ours to remove, is no failure.
function removeDir(dir) {
  try {
    if (dir) removeTree(dir, { recursive: true, force: true });
  } catch {}
}

// What a spare realm may import ahead from a call's envelope for the child:
// its code (the tool revision's, the same for each call), never its args.
// Null when there is none, or the call brings preload modules, which must run first.
function preparable(childPart) {
  try {
    const { code, nodeModules, preload } = JSON.parse(childPart.toString("utf8"));
    if (typeof code !== "string" || preload?.length > 0) return null;
    return typeof nodeModules === "string" ? { code, nodeModules } : { code };
  } catch {
    return null;
  }
}

// Spares (pre-started realms of a per-tool container) are replaced at the
// latest SPARE_REFILL_WAIT_MS after a call takes one, sooner when a call
// ends: starting a realm costs tens of ms of CPU, which a short call would
// otherwise share its container's CPU with. One that could not start is
// retried after SPARE_RETRY_MS, never in a busy loop.
const SPARE_REFILL_WAIT_MS = 20;
const SPARE_RETRY_MS = 1000;

// `task`, scheduled without piling up: within(ms) runs it once within ms
// (the earliest asked of wins), however often asked until it has run.
function coalescedTask(task) {
  let timer = null;
  let due = Infinity;
  const run = () => {
    timer = null;
    due = Infinity;
    task();
  };
  return {
    within(ms) {
      const at = Date.now() + ms;
      if (at >= due) return;
      clearTimeout(timer);
      due = at;
      timer = setTimeout(run, ms);
    },
  };
}
