// Egress for runs that may reach the network (executor/src/egress/): the
// container has no network but `lo`; its only way out is the run's proxy on
// a Unix socket. Imported before the tool's code (by the harness, or by
// NODE_OPTIONS in a session), this makes `fetch`, `http` and `https` go
// through it without the code doing anything:
// - https: every Agent's connections become CONNECT tunnels (TLS inside is
//   the code's own; for runs with secrets the proxy's CA is the only one
//   trusted, since the proxy reads those requests to put secrets in);
// - http: requests go to the proxy, which checks their Host header;
// - fetch: Node's built-in fetch takes its transport from undici's global
//   dispatcher slot; ours sends each request through http/https above.
// A refusal becomes an ordinary network error (code EGRESS_REFUSED) whose
// message says which policy refused it. Secrets appear as placeholders in
// process.env and in `secrets`.
import { readFileSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";

const settings = JSON.parse(readFileSync(new URL("./egress.json", import.meta.url), "utf8"));
const credential = "Basic " + Buffer.from("run:" + settings.token).toString("base64");
const trusted = settings.ca ? [readFileSync(settings.ca, "utf8")] : null;
const REFUSAL_HEADER = "x-dynamic-mcp-egress";
const httpRequest = http.request;
const httpsRequest = https.request;

function refusal(message, statusCode) {
  const error = new Error(message || `the egress proxy refused the connection (HTTP ${statusCode})`);
  error.code = "EGRESS_REFUSED";
  error.statusCode = statusCode;
  return error;
}

// ---- https: any Agent opens a CONNECT tunnel through the proxy ------------

function connectThroughProxy(options, callback) {
  const host = options.host || options.hostname || "localhost";
  const port = Number(options.port) || 443;
  const authority = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
  const connect = httpRequest({
    socketPath: settings.socket,
    method: "CONNECT",
    path: authority,
    headers: { host: authority, "proxy-authorization": credential },
    agent: false,
  });
  connect.once("connect", (response, socket) => {
    if (response.statusCode !== 200) {
      socket.destroy();
      callback(refusal(response.headers[REFUSAL_HEADER], response.statusCode));
      return;
    }
    const tlsOptions = { ...options, socket, host, port };
    delete tlsOptions.path;
    delete tlsOptions.socketPath;
    if (!net.isIP(host)) tlsOptions.servername = options.servername || host;
    if (trusted) tlsOptions.ca = trusted;
    callback(null, tls.connect(tlsOptions));
  });
  connect.once("error", callback);
  connect.end();
}

https.Agent.prototype.createConnection = function createConnection(options, callback) {
  connectThroughProxy(options, callback);
};

// ---- http: requests go to the proxy, with the run's credential ------------

http.Agent.prototype.createConnection = function createConnection() {
  return net.createConnection({ path: settings.socket });
};

// A refusal is the proxy's own answer (for https, from inside a tunnel of a
// run with secrets); the code sees it as an error.
function refusalsAsErrors(request) {
  const emit = request.emit;
  request.emit = function (event, ...rest) {
    const response = rest[0];
    if (event === "response" && response && response.headers[REFUSAL_HEADER]) {
      response.resume();
      return emit.call(this, "error", refusal(response.headers[REFUSAL_HEADER], response.statusCode));
    }
    return emit.call(this, event, ...rest);
  };
  return request;
}

http.request = function request(...args) {
  const request = httpRequest.apply(this, args);
  if (!request.getHeader("proxy-authorization")) request.setHeader("proxy-authorization", credential);
  return refusalsAsErrors(request);
};
https.request = function request(...args) {
  return refusalsAsErrors(httpsRequest.apply(this, args));
};
for (const client of [http, https]) {
  client.get = function get(...args) {
    const request = client.request(...args);
    request.end();
    return request;
  };
}

// ---- fetch: undici's global dispatcher slot, served over http/https -------

function headerObject(headers) {
  const object = {};
  const add = (name, value) => {
    const key = String(name).toLowerCase();
    object[key] = key in object ? [].concat(object[key], value) : value;
  };
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) add(headers[i], headers[i + 1]);
  } else if (headers && typeof headers[Symbol.iterator] === "function") {
    for (const [name, value] of headers) add(name, value);
  } else if (headers) {
    for (const name of Object.keys(headers)) add(name, headers[name]);
  }
  return object;
}

async function writeBody(request, body) {
  if (body == null) return request.end();
  if (typeof body === "string" || body instanceof Uint8Array) return request.end(body);
  for await (const chunk of body) {
    if (!request.write(chunk)) await new Promise((resolve) => request.once("drain", resolve));
  }
  request.end();
}

const dispatcher = {
  dispatch(options, handler) {
    const url = new URL(options.path, options.origin);
    const client = url.protocol === "https:" ? https : http;
    const request = client.request({
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port || (url.protocol === "https:" ? 443 : 80),
      method: options.method,
      path: url.pathname + url.search,
      headers: { ...headerObject(options.headers), host: url.host },
    });
    // Report the end once: an abort or a refusal may make the request emit
    // "error" again after the first.
    let settled = false;
    const fail = (error) => {
      if (settled) return;
      settled = true;
      handler.onError?.(error);
    };
    handler.onConnect?.((error) => {
      settled = true;
      request.destroy(error);
    });
    request.on("response", (response) => {
      const raw = [];
      for (let i = 0; i < response.rawHeaders.length; i += 2) {
        raw.push(Buffer.from(response.rawHeaders[i]), Buffer.from(response.rawHeaders[i + 1]));
      }
      const go = handler.onHeaders?.(response.statusCode, raw, () => response.resume(), response.statusMessage);
      if (go === false) response.pause();
      response.on("data", (chunk) => {
        if (handler.onData?.(chunk) === false) response.pause();
      });
      response.on("end", () => {
        if (settled) return;
        settled = true;
        const trailers = [];
        for (let i = 0; i < response.rawTrailers.length; i += 2) {
          trailers.push(Buffer.from(response.rawTrailers[i]), Buffer.from(response.rawTrailers[i + 1]));
        }
        handler.onComplete?.(trailers);
      });
      response.on("error", fail);
    });
    request.on("error", fail);
    writeBody(request, options.body).catch((error) => request.destroy(error));
    return true;
  },
  close() {
    return Promise.resolve();
  },
  destroy() {
    return Promise.resolve();
  },
};
globalThis[Symbol.for("undici.globalDispatcher.1")] = dispatcher;

// fetch reports every network error as "fetch failed"; say why instead.
const builtinFetch = globalThis.fetch;
globalThis.fetch = async function fetch(...args) {
  try {
    return await builtinFetch(...args);
  } catch (error) {
    if (error && error.cause && error.cause.code === "EGRESS_REFUSED") {
      error.message = `fetch failed: ${error.cause.message}`;
    }
    throw error;
  }
};

// ---- secrets: placeholders only -------------------------------------------

const placeholders = Object.freeze({ ...settings.secrets });
for (const [name, placeholder] of Object.entries(placeholders)) process.env[name] = placeholder;
globalThis.secrets = placeholders;

// `import { request } from "node:https"` must see the patched functions too.
syncBuiltinESMExports();
