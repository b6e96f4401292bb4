// A web server for the egress tests: HTTP on 80 and HTTPS on 443 (with the
// certificate in TLS_CERT / TLS_KEY). Every request is printed as one JSON
// line on stdout — the test reads them from the container's log — and
// answered with the same JSON, so a test also sees what comes back.
import http from "node:http";
import https from "node:https";

function handler(scheme) {
  return (request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const seen = {
        scheme,
        host: request.headers.host ?? null,
        method: request.method,
        path: request.url,
        authorization: request.headers.authorization ?? null,
        apiKey: request.headers["x-api-key"] ?? null,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      process.stdout.write(JSON.stringify(seen) + "\n");
      response.setHeader("content-type", "application/json");
      response.end(JSON.stringify(seen));
    });
  };
}

let listening = 0;
const ready = () => {
  if (++listening === 2) process.stdout.write(JSON.stringify({ ready: true }) + "\n");
};
http.createServer(handler("http")).listen(80, ready);
https.createServer({ cert: process.env.TLS_CERT, key: process.env.TLS_KEY }, handler("https")).listen(443, ready);
