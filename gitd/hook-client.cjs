// deck's pre-receive hook client. git runs it (through the hook script deck writes into every
// repository) while a push waits: it hands the pushed refs to the deck server over a unix socket,
// relays every line the server sends (git shows them to the pusher as "remote:" lines), and exits
// with the server's verdict. Plain CommonJS with no dependencies so it starts in milliseconds.
"use strict";
const net = require("node:net");

const socketPath = process.argv[2];
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const refs = Buffer.concat(chunks).toString("utf8").split("\n").filter(Boolean);
  const header = {
    pushId: process.env.DECK_PUSH_ID || "",
    refs,
    env: {
      GIT_OBJECT_DIRECTORY: process.env.GIT_OBJECT_DIRECTORY || "",
      GIT_ALTERNATE_OBJECT_DIRECTORIES: process.env.GIT_ALTERNATE_OBJECT_DIRECTORIES || "",
      GIT_QUARANTINE_PATH: process.env.GIT_QUARANTINE_PATH || "",
    },
    repoDir: process.cwd(),
  };
  let verdict = null;
  let buffered = "";
  const sock = net.createConnection(socketPath);
  sock.on("connect", () => sock.write(JSON.stringify(header) + "\n"));
  sock.on("data", (data) => {
    buffered += data.toString("utf8");
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith("\u0000exit:")) verdict = Number(line.slice(6)) || 0;
      else process.stderr.write(line + "\n");
    }
  });
  sock.on("error", (e) => {
    if (verdict === null) {
      process.stderr.write(`deck: cannot reach the deck server (${e.code || e.message}); push refused, try again when deck is running\n`);
      process.exit(1);
    }
  });
  sock.on("close", () => {
    if (verdict === null) {
      process.stderr.write("deck: the connection to the deck server was lost; push refused\n");
      process.exit(1);
    }
    process.exit(verdict);
  });
});
