// Socket.IO sessions per second through a proxy, for the S6 scenario of `run`.
//   node sessions.js URL CONCURRENCY SECONDS
// CONCURRENCY loops each open a socket.io-client 4.8 session (polling handshake,
// then the upgrade to a websocket, cookies kept so the proxy's stickiness works),
// make one acknowledged round trip over the websocket that must be answered by the
// server that greeted it, and close. Prints one JSON line: sessions done and failed.
// Resolved from tests/socketio/node_modules (run sets NODE_PATH).
"use strict";
const { io } = require("socket.io-client");

const [url, concArg, secondsArg] = process.argv.slice(2);
const concurrency = Number(concArg || 20);
const seconds = Number(secondsArg || 5);

function session() {
  return new Promise((resolve) => {
    const socket = io(url, {
      transports: ["polling", "websocket"],
      withCredentials: true,
      reconnection: false,
      forceNew: true,
      timeout: 10000,
    });
    let done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(error);
    };
    const timer = setTimeout(() => finish("timeout"), 15000);
    socket.on("connect_error", (err) => finish(`connect_error: ${err.message}`));
    socket.on("disconnect", (reason) => finish(`disconnect: ${reason}`));
    socket.on("hello", ({ id }) => {
      const roundTrip = async () => {
        try {
          const answer = await socket.timeout(5000).emitWithAck("whoami", 0);
          finish(answer.id === id ? null : `answered by ${answer.id}, not ${id}`);
        } catch (e) {
          finish(`round trip: ${e.message}`);
        }
      };
      const engine = socket.io.engine;
      if (engine.transport.name === "websocket") return roundTrip();
      engine.once("upgrade", roundTrip);
      engine.once("upgradeError", (err) => finish(`upgrade: ${err.message}`));
    });
  });
}

(async () => {
  const end = Date.now() + seconds * 1000;
  let ok = 0;
  let failed = 0;
  const errors = {};
  const loop = async () => {
    while (Date.now() < end) {
      const error = await session();
      if (error) {
        failed++;
        errors[error] = (errors[error] || 0) + 1;
      } else {
        ok++;
      }
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (Date.now() - started) / 1000;
  console.log(JSON.stringify({ ok, failed, seconds: elapsed, errors }));
  process.exit(0);
})();
