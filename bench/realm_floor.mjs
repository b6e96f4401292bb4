// The floor of container-per-tool mode: what a fresh, used-once JS realm
// costs inside the sandbox image, measured where the calls run. Prints
// figures; asserts nothing. Run it under the per-tool container's flags:
//
//   docker run --rm --read-only --cap-drop ALL --security-opt no-new-privileges \
//     --pids-limit 128 --memory 512m --memory-swap 512m --cpus 1 --network none \
//     --user 65534:65534 --tmpfs /tmp:rw,noexec,nosuid,size=16m \
//     -v "$PWD/bench/realm_floor.mjs:/floor.mjs:ro" dynamic-mcp-sandbox:latest node /floor.mjs 40
//
// CPU is this process's (worker threads included), from process.cpuUsage().
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { Worker } from "node:worker_threads";

const N = Number(process.argv[2] ?? 40);
const limits = { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 16 };
const source = (body) => new URL("data:text/javascript," + encodeURIComponent(body));
const echo = source(`import { parentPort } from "node:worker_threads";
parentPort.once("message", (m) => parentPort.postMessage(m));`);
const importer = source(`import { parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";
let ready = null;
if (workerData.ahead) ready = await import(pathToFileURL(workerData.path).href);
parentPort.once("message", async (m) => {
  const tool = ready ?? (await import(pathToFileURL(workerData.path).href + "?" + Math.random()));
  parentPort.postMessage(await tool.run(m));
});`);
const dir = mkdtempSync("/tmp/floor-");
writeFileSync(`${dir}/tool.mjs`, "export async function run(args) { return String(args).toUpperCase(); }\n");

const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const p50 = (samples) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)].toFixed(2);
// Like threads.mjs: output streams and a copy of the environment per worker.
const start = (url, workerData) =>
  new Worker(url, { workerData, stdout: true, stderr: true, env: { ...process.env }, resourceLimits: limits });
const online = (worker) => new Promise((resolve) => worker.once("online", resolve));
const answer = (worker, message) =>
  new Promise((resolve) => {
    worker.once("message", resolve);
    worker.postMessage(message);
  });

async function startToEnd(label, url, workerData) {
  const wall = [];
  const cpu0 = cpuMs();
  for (let i = 0; i < N; i++) {
    const began = performance.now();
    const worker = start(url, workerData);
    await online(worker);
    await answer(worker, "x");
    await worker.terminate();
    wall.push(performance.now() - began);
  }
  console.log(`${label}: p50 ${p50(wall)} ms wall, ${((cpuMs() - cpu0) / N).toFixed(1)} ms CPU per worker`);
}

// A call that finds its worker started (and maybe its module imported) ahead.
async function preStarted(label, ahead) {
  const wall = [];
  for (let i = 0; i < N; i++) {
    const worker = start(importer, { path: `${dir}/tool.mjs`, ahead });
    await online(worker);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const began = performance.now();
    await answer(worker, "x");
    wall.push(performance.now() - began);
    await worker.terminate();
  }
  console.log(`${label}: p50 ${p50(wall)} ms from message to answer`);
}

await startToEnd("worker start + echo + terminate", echo, {});
await startToEnd("worker start + import the tool + run + terminate", importer, { path: `${dir}/tool.mjs` });
await preStarted("pre-started worker, tool imported on the call", false);
await preStarted("pre-started worker, tool imported ahead", true);
const spawned = [];
const cpu0 = cpuMs();
for (let i = 0; i < Math.min(N, 20); i++) {
  const began = performance.now();
  await new Promise((resolve) => spawn(process.execPath, ["-e", "0"], { stdio: "ignore" }).on("exit", resolve));
  spawned.push(performance.now() - began);
}
console.log(`a node process (node -e 0), spawned to exit: p50 ${p50(spawned)} ms wall`);
