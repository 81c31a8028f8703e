// A Socket.IO 4.8 server for tether's tests.
//   node server.js ID [PORT]
// Prints "LISTENING <port>" when ready. GET /stats answers
// {"id", "connections", "unknownSid"}: unknownSid counts the "Session ID unknown"
// errors (Engine.IO code 1) that a load balancer without stickiness causes.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const id = process.argv[2] || "server";
const port = Number(process.argv[3] || 0);
let connections = 0;
let unknownSid = 0;

const httpServer = http.createServer((req, res) => {
  if (req.url === "/stats") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ id, connections, unknownSid }));
    return;
  }
  if (!req.url.startsWith("/socket.io/")) {
    res.end(id);
  }
});

const io = new Server(httpServer, {
  // Browsers send the sticky cookie cross-origin only with credentials and an
  // explicit origin; the Node clients here do not need CORS, but this is the setup
  // a real deployment behind tether uses.
  cors: { origin: true, credentials: true },
});

io.engine.on("connection_error", (err) => {
  if (err.code === 1) {
    unknownSid += 1;
    console.error(`${id}: Session ID unknown`);
  }
});

io.on("connection", (socket) => {
  connections += 1;
  socket.emit("hello", { id });
  socket.on("whoami", (n, ack) => {
    if (typeof ack === "function") {
      ack({ id, n, transport: socket.conn.transport.name });
    }
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`LISTENING ${httpServer.address().port}`);
});

process.on("SIGTERM", () => process.exit(0));
