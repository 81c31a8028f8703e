// The second service, behind tether's path rule `/api/*` (a second target group).
//   node api.js     Environment: PORT (default 0). Prints "LISTENING <port>".
//   GET /api/health  200 "ok" (its target group's health check)
//   GET /api/info    what the API saw: the headers tether adds (X-Forwarded-*, trace id)
"use strict";
const http = require("http");

const port = Number(process.env.PORT || 0);
const started = Date.now();

const server = http.createServer((req, res) => {
  const url = req.url.split("?")[0];
  if (url === "/api/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
  } else if (url === "/api/info") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({
      service: "api",
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      forwardedFor: req.headers["x-forwarded-for"] || null,
      forwardedProto: req.headers["x-forwarded-proto"] || null,
      forwardedPort: req.headers["x-forwarded-port"] || null,
      traceId: req.headers["x-amzn-trace-id"] || null,
    }));
  } else {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  }
});

server.listen(port, "127.0.0.1", () => console.log(`LISTENING ${server.address().port}`));
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
