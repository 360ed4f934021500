// Interop check with a client nobody on the team wrote: @xmpp/client (xmpp.js) signs in through
// sotto-bridge's RFC 7395 endpoint and chats with another account.
//
// Driven by tests/tests/interop_xmpp_js.rs. Input (environment):
//   XMPP_SERVICE  ws://127.0.0.1:PORT/xmpp-websocket   XMPP_DOMAIN  localhost
//   XMPP_USERNAME / XMPP_PASSWORD                       XMPP_PEER    full JID to chat with
// Output: one JSON object per line on stdout, in this order:
//   {"event":"online","jid":…,"mechanism":…}   after SASL, stream restart and resource binding
//   {"event":"sent","id":…}                    a chat message to XMPP_PEER has been written
//   {"event":"received","from":…,"body":…}     a chat message with a body arrived from XMPP_PEER
//   {"event":"offline"}                        after a clean <close/> handshake
// Exit status 0 on success; anything else prints {"event":"error",…} and exits 1.
// Over ws:// on loopback (127.0.0.1, ::1, localhost) xmpp.js counts the connection as secure, so
// it needs no option to authenticate there; it picks the first mechanism it supports in its own
// priority order (SCRAM-SHA-1 before PLAIN).

import { client, xml } from "@xmpp/client";

const env = (name) => {
  const value = process.env[name];
  if (!value) fail(`missing environment variable ${name}`);
  return value;
};

function emit(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

function fail(message) {
  emit({ event: "error", message: String(message) });
  process.exit(1);
}

const service = env("XMPP_SERVICE");
const domain = env("XMPP_DOMAIN");
const peer = env("XMPP_PEER");
const peerBare = peer.split("/")[0];

const timer = setTimeout(() => fail("timed out after 30 s"), 30_000);

const xmpp = client({
  service,
  domain,
  resource: "xmppjs",
  username: env("XMPP_USERNAME"),
  password: env("XMPP_PASSWORD"),
});
// One connection attempt only: a failure must fail the test, not be retried quietly.
xmpp.reconnect.stop();

let mechanism = null;
xmpp.on("send", (element) => {
  if (element.is("auth", "urn:ietf:params:xml:ns:xmpp-sasl")) {
    mechanism = element.attrs.mechanism;
  }
});

if (process.env.XMPP_JS_DEBUG) {
  xmpp.on("element", (element) => process.stderr.write(`IN  ${element}\n`));
  xmpp.on("send", (element) => process.stderr.write(`OUT ${element}\n`));
}

xmpp.on("error", (err) => fail(err?.stack ?? err));

xmpp.on("stanza", async (stanza) => {
  if (!stanza.is("message")) return;
  const from = stanza.attrs.from ?? "";
  const body = stanza.getChildText("body");
  if (body === null || from.split("/")[0] !== peerBare) return;
  emit({ event: "received", from, body });
  await xmpp.stop();
});

xmpp.on("offline", () => {
  clearTimeout(timer);
  emit({ event: "offline" });
  process.exit(0);
});

// xmpp.js 0.14.0 emits "online" right after resource binding, while its XEP-0198 <enable/> is
// still unanswered. If a stanza (our own presence, reflected) then arrives in the same read as
// <enabled/>, its asynchronous middleware can count that stanza after resetting the counter, so it
// later acknowledges one stanza more than the server sent and Prosody ends the stream with
// "Client acknowledged more stanzas than sent by server". That race is in the client library (the
// bridge relays every element in order, one per WebSocket message); waiting for <enabled/>
// before sending anything avoids it.
async function streamManagementSettled() {
  for (let i = 0; i < 50 && !xmpp.streamManagement.enabled; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

xmpp.on("online", async (address) => {
  await streamManagementSettled();
  emit({
    event: "online",
    jid: address.toString(),
    mechanism,
    streamManagement: xmpp.streamManagement.enabled,
  });
  await xmpp.send(xml("presence"));
  const id = "xmppjs-1";
  await xmpp.send(
    xml(
      "message",
      { type: "chat", to: peer, id },
      xml("body", {}, "hello from xmpp.js & <friends>"),
    ),
  );
  emit({ event: "sent", id });
});

xmpp.start().catch((err) => fail(err?.stack ?? err));
