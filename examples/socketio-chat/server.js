// One Socket.IO 4.8 chat server. Several of them share one room through Redis
// (@socket.io/redis-adapter): a message sent to any server reaches every participant.
//   node server.js ID
// Environment: PORT (default 0: a free port), REDIS_SOCKET (a Unix socket path) or
// REDIS_URL (default redis://127.0.0.1:6379).
// Prints "LISTENING <port>" once Redis is connected and the port is bound.
//   GET /          the chat page (also the target group's health check: 200)
//   GET /stats     {"id", "connections", "unknownSid"} (unknownSid counts the
//                  "Session ID unknown" errors a load balancer without stickiness causes)
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const id = process.argv[2] || "chat";
const port = Number(process.env.PORT || 0);
const page = fs.readFileSync(path.join(__dirname, "public", "index.html"));
let connections = 0;
let unknownSid = 0;

const httpServer = http.createServer((req, res) => {
  const url = req.url.split("?")[0];
  if (url === "/" || url === "/index.html") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "x-chat-server": id });
    res.end(page);
  } else if (url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id, connections, unknownSid }));
  } else if (!url.startsWith("/socket.io/")) {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  }
});

const io = new Server(httpServer, {
  // Same origin through tether; a cross-origin page would also need credentials
  // for the AWSALBCORS cookie to be sent.
  cors: { origin: true, credentials: true },
});

io.engine.on("connection_error", (err) => {
  if (err.code === 1) {
    unknownSid += 1;
    console.error(`${id}: Session ID unknown`);
  }
});

// Everyone on every server, with the server they are on (fetchSockets asks the
// other servers through Redis).
async function participants() {
  const sockets = await io.fetchSockets();
  return sockets
    .filter((s) => s.data.name)
    .map((s) => ({ name: s.data.name, server: s.data.server }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

async function announce() {
  try {
    io.emit("participants", await participants());
  } catch (e) {
    // A server that left the room does not answer fetchSockets in time: skip it.
    console.error(`${id}: participants: ${e.message}`);
  }
}

io.on("connection", (socket) => {
  connections += 1;
  socket.data.server = id;
  socket.emit("welcome", { server: id, transport: socket.conn.transport.name });
  socket.conn.on("upgrade", (t) => socket.emit("transport", { server: id, transport: t.name }));
  socket.on("join", (name, ack) => {
    socket.data.name = String(name).slice(0, 40);
    if (typeof ack === "function") ack({ server: id });
    announce();
  });
  // Broadcast to every participant on every server; the ack tells the sender the
  // server has handed the message to the adapter.
  socket.on("chat", (msg, ack) => {
    const out = {
      name: socket.data.name || "anonymous",
      server: id,
      text: String((msg && msg.text) || "").slice(0, 500),
      seq: msg && msg.seq,
    };
    io.emit("chat", out);
    if (typeof ack === "function") ack({ server: id });
  });
  socket.on("disconnect", () => announce());
});

async function main() {
  const options = process.env.REDIS_SOCKET
    ? { socket: { path: process.env.REDIS_SOCKET } }
    : { url: process.env.REDIS_URL || "redis://127.0.0.1:6379" };
  const pub = createClient(options);
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error(`${id}: redis: ${e.message}`));
  sub.on("error", (e) => console.error(`${id}: redis: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub, { requestsTimeout: 2000 }));
  httpServer.listen(port, "127.0.0.1", () => {
    console.log(`LISTENING ${httpServer.address().port}`);
  });
}

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
main().catch((e) => {
  console.error(`${id}: ${e.stack || e}`);
  process.exit(1);
});
