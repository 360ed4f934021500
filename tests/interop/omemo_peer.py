"""A scriptable XMPP peer for Sotto's interop tests, built on code nobody on the team wrote:
slixmpp (XMPP), slixmpp-omemo + python-omemo + python-oldmemo (OMEMO 0.3, the stack Gajim-era
Python clients use). Driven by tests/src/pypeer.rs.

It logs in directly to the test Prosody (c2s with STARTTLS on loopback, trusting the fixture's
CA), then reads one JSON command per line on stdin and writes one JSON event per line on stdout.

Configuration (environment):
  PEER_JID, PEER_PASSWORD   the account (full JID allowed; a resource is picked otherwise)
  PEER_HOST, PEER_PORT      Prosody's c2s address
  PEER_CA                   the fixture's CA certificate (PEM)
  PEER_STORE                OMEMO state file (JSON); kept across runs, so a device keeps its id
  PEER_OMEMO                "1" (default) to load OMEMO, "0" for a plain slixmpp client
  PEER_LOG                  optional log file (warnings only: no message contents)
  PEER_LOG_LEVEL            e.g. DEBUG to debug a test (then the log holds plaintexts and XML)

Commands (stdin):
  {"cmd": "send", "to": JID, "body": TEXT}          OMEMO-encrypted chat message
  {"cmd": "send_plain", "to": JID, "body": TEXT}    unencrypted chat message
      (both take "replace": ID to send a correction of message ID, XEP-0308)
  {"cmd": "retract", "to": JID, "id": ID}           retract message ID (XEP-0424), as Conversations
                                                    and Dino send it: unencrypted, with a fallback
  {"cmd": "send_tampered", "to": JID, "body": TEXT, "part": "payload"|"key"}
                                                     encrypted, then one bit flipped in the
                                                     payload or in every key element
  {"cmd": "hold", "to": JID, "body": TEXT}          encrypt now, send on "release"
  {"cmd": "release", "order": "forward"|"reverse"}  send the held messages in that order
  {"cmd": "replay"}                                 send the last encrypted stanza again
  {"cmd": "devices", "jid": JID}                     refresh and report JID's OMEMO 0.3 devices
  {"cmd": "set_device_list", "devices": [ID, ...]}   publish our own OMEMO 0.3 device list as given
  {"cmd": "replace_sessions", "jid": JID}            python-omemo's session repair for JID's devices
  {"cmd": "publish_avatar", "data": BASE64}           publish a picture (XEP-0084), data then metadata
  {"cmd": "subscribe", "jid": JID}                   presence subscription request
  {"cmd": "quit"}                                    disconnect and exit 0

Events (stdout): ready, sent, message, key_transport, decrypt_failed, devices, done, error,
subscribed; each a JSON object with an "event" key. A "message" event names the message it
corrects ("replace", XEP-0308) or retracts ("retract", XEP-0424), else null.
"""

import asyncio
import base64
import json
import logging
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, FrozenSet, Optional

from slixmpp.clientxmpp import ClientXMPP
from slixmpp.jid import JID
from slixmpp.stanza import Message
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath

OMEMO = os.environ.get("PEER_OMEMO", "1") == "1"
OLDMEMO_NS = "eu.siacs.conversations.axolotl"

if OMEMO:
    from omemo.session_manager import NoEligibleDevices
    from omemo.storage import Just, Maybe, Nothing, Storage
    from omemo.types import DeviceInformation, JSONType
    from slixmpp.plugins import register_plugin  # type: ignore[attr-defined]
    from slixmpp_omemo import TrustLevel, XEP_0384

    class JsonStorage(Storage):
        """python-omemo's state in one JSON file."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path
            self.data: Dict[str, Any] = {}
            if path.is_file():
                self.data = json.loads(path.read_text(encoding="utf8"))

        async def _load(self, key: str) -> "Maybe[JSONType]":
            if key in self.data:
                return Just(self.data[key])
            return Nothing()

        async def _store(self, key: str, value: "JSONType") -> None:
            self.data[key] = value
            self._save()

        async def _delete(self, key: str) -> None:
            self.data.pop(key, None)
            self._save()

        def _save(self) -> None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data), encoding="utf8")
            tmp.replace(self.path)

    class PeerOmemo(XEP_0384):  # pylint: disable=invalid-name
        """slixmpp-omemo with Blind Trust Before Verification."""

        default_config = {
            "fallback_message": "This message is OMEMO encrypted.",
            "json_file_path": None,
        }

        def plugin_init(self) -> None:
            self._storage = JsonStorage(Path(self.json_file_path))
            super().plugin_init()

        @property
        def storage(self) -> "Storage":
            return self._storage

        @property
        def _btbv_enabled(self) -> bool:
            return True

        async def _devices_blindly_trusted(
            self,
            blindly_trusted: "FrozenSet[DeviceInformation]",
            identifier: Optional[str],
        ) -> None:
            pass

        async def _prompt_manual_trust(
            self,
            manually_trusted: "FrozenSet[DeviceInformation]",
            identifier: Optional[str],
        ) -> None:
            session_manager = await self.get_session_manager()
            for device in manually_trusted:
                await session_manager.set_trust(
                    device.bare_jid, device.identity_key, TrustLevel.BLINDLY_TRUSTED.value
                )

    register_plugin(PeerOmemo)


CORRECT_NS = "urn:xmpp:message-correct:0"
RETRACT_NS = "urn:xmpp:message-retract:1"


def add_replace(message: Message, replaces: Optional[str]) -> None:
    """Makes `message` a correction (XEP-0308) of the message with id `replaces`; outside the
    OMEMO element, where XEP-0308 and OMEMO 0.3 clients put it."""
    if replaces:
        ET.SubElement(message.xml, f"{{{CORRECT_NS}}}replace", {"id": replaces})


def replaced_id(stanza: Message) -> Optional[str]:
    replace = stanza.xml.find(f"{{{CORRECT_NS}}}replace")
    return None if replace is None else replace.get("id")


def retracted_id(stanza: Message) -> Optional[str]:
    """The id a retraction (XEP-0424 version 1) names, as Conversations, Dino and Gajim read it."""
    retract = stanza.xml.find(f"{{{RETRACT_NS}}}retract")
    return None if retract is None else retract.get("id")


def emit(event: str, **fields: Any) -> None:
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def fingerprint(ed25519_identity: bytes) -> str:
    """The fingerprint Conversations and Gajim show for OMEMO 0.3: the identity key in its
    Curve25519 form, hex (python-omemo keeps identities in Ed25519 form)."""
    import xeddsa  # pylint: disable=import-outside-toplevel

    return xeddsa.ed25519_pub_to_curve25519_pub(ed25519_identity).hex()


def flip_bit_b64(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    if raw:
        raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


class Peer(ClientXMPP):
    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.use_message_ids = True
        self.ready = asyncio.Event()
        self.held: list = []
        self.last: Optional[Message] = None
        self.add_event_handler("session_start", self.on_session_start)
        # Every message stanza: slixmpp's own "message" event skips those without a body, and
        # OMEMO key-transport (empty) messages have none.
        self.register_handler(
            CoroutineCallback("AllMessages", MatchXPath(f"{{{self.default_ns}}}message"), self.on_message)
        )
        self.add_event_handler("failed_auth", lambda _: emit("error", message="authentication failed"))
        self.add_event_handler("presence_subscribed", lambda p: emit("subscribed", jid=p["from"].bare))
        if OMEMO:
            self.add_event_handler("omemo_initialized", self.on_omemo_initialized)

    async def on_session_start(self, _event: Any) -> None:
        self.send_presence()
        try:
            await self.get_roster()
        except Exception as e:  # pylint: disable=broad-exception-caught
            emit("error", message=f"roster: {e!r}")
        if not OMEMO:
            self.ready.set()
            emit("ready", jid=str(self.boundjid))

    async def on_omemo_initialized(self, _event: Any) -> None:
        session_manager = await self.plugin["xep_0384"].get_session_manager()
        own, _others = await session_manager.get_own_device_information()
        emit(
            "ready",
            jid=str(self.boundjid),
            device=own.device_id,
            fingerprint=fingerprint(own.identity_key),
        )
        self.ready.set()

    async def on_message(self, stanza: Message) -> None:
        if stanza["type"] not in ("chat", "normal"):
            return
        sender = str(stanza["from"])
        if OMEMO:
            xep_0384 = self.plugin["xep_0384"]
            namespaces = xep_0384.is_encrypted(stanza)
            if namespaces:
                encrypted = stanza.xml.find(f"{{{OLDMEMO_NS}}}encrypted")
                sid = None
                if encrypted is not None:
                    header = encrypted.find(f"{{{OLDMEMO_NS}}}header")
                    if header is not None and header.get("sid", "").isdigit():
                        sid = int(header.get("sid"))
                try:
                    decrypted, device = await xep_0384.decrypt_message(stanza)
                except Exception as e:  # pylint: disable=broad-exception-caught
                    emit(
                        "decrypt_failed",
                        **{"from": sender, "device": sid, "error": type(e).__name__, "detail": str(e)},
                    )
                    return
                body = decrypted["body"]
                if body:
                    emit(
                        "message",
                        **{"from": sender, "body": body, "encrypted": True, "device": device.device_id,
                           "id": stanza["id"], "replace": replaced_id(stanza),
                           "retract": retracted_id(stanza)},
                    )
                else:
                    emit("key_transport", **{"from": sender, "device": device.device_id})
                return
        if stanza["body"]:
            emit("message", **{"from": sender, "body": stanza["body"], "encrypted": False, "id": stanza["id"],
                               "replace": replaced_id(stanza), "retract": retracted_id(stanza)})

    async def encrypted(self, to: str, body: str) -> Message:
        message = self.make_message(mto=JID(to), mtype="chat")
        message["body"] = body
        xep_0384 = self.plugin["xep_0384"]
        try:
            encrypted, errors = await xep_0384.encrypt_message(message, JID(to))
        except NoEligibleDevices:
            # The device list that PEP pushes after a new subscription may not be here yet:
            # fetch it like a client does when a chat opens, then try once more.
            await xep_0384.refresh_device_lists({JID(to)}, force_download=True)
            encrypted, errors = await xep_0384.encrypt_message(message, JID(to))
        if errors:
            emit("warning", message=f"non-critical encryption errors: {len(errors)}")
        if encrypted is None:
            raise RuntimeError("nothing to send")
        encrypted["type"] = "chat"
        return encrypted

    async def command(self, cmd: Dict[str, Any]) -> bool:
        kind = cmd.get("cmd")
        if kind == "quit":
            return False
        if kind == "send":
            message = await self.encrypted(cmd["to"], cmd["body"])
            add_replace(message, cmd.get("replace"))
            message.send()
            self.last = message
            emit("sent", id=message["id"])
        elif kind == "hold":
            # Encrypted now, sent later by "release" (to deliver messages out of order).
            message = await self.encrypted(cmd["to"], cmd["body"])
            self.held.append(message)
            emit("held", id=message["id"])
        elif kind == "release":
            held, self.held = self.held, []
            if cmd.get("order") == "reverse":
                held.reverse()
            for message in held:
                message.send()
                self.last = message
            emit("done", cmd=kind, count=len(held))
        elif kind == "replay":
            # The last encrypted stanza again, byte for byte (a replay).
            if self.last is None:
                raise RuntimeError("nothing to replay")
            self.send_raw(str(self.last))
            emit("done", cmd=kind)
        elif kind == "send_plain":
            message = self.make_message(mto=JID(cmd["to"]), mbody=cmd["body"], mtype="chat")
            add_replace(message, cmd.get("replace"))
            message.send()
            emit("sent", id=message["id"])
        elif kind == "retract":
            message = self.make_message(
                mto=JID(cmd["to"]), mtype="chat",
                mbody="/me retracted a previous message, but it's unsupported by your client.")
            ET.SubElement(message.xml, f"{{{RETRACT_NS}}}retract", {"id": cmd["id"]})
            ET.SubElement(message.xml, "{urn:xmpp:fallback:0}fallback", {"for": RETRACT_NS})
            ET.SubElement(message.xml, "{urn:xmpp:hints}store")
            message.send()
            emit("sent", id=message["id"])
        elif kind == "send_tampered":
            message = await self.encrypted(cmd["to"], cmd["body"])
            encrypted = message.xml.find(f"{{{OLDMEMO_NS}}}encrypted")
            if encrypted is None:
                raise RuntimeError("no OMEMO 0.3 element to tamper with")
            if cmd.get("part", "payload") == "payload":
                payload = encrypted.find(f"{{{OLDMEMO_NS}}}payload")
                payload.text = flip_bit_b64(payload.text, 3)
            else:
                header = encrypted.find(f"{{{OLDMEMO_NS}}}header")
                for key in header.findall(f"{{{OLDMEMO_NS}}}key"):
                    # Inside the ciphertext of the inner SignalMessage: the MAC must fail.
                    key.text = flip_bit_b64(key.text, -12)
            message.send()
            emit("sent", id=message["id"])
        elif kind == "devices":
            session_manager = await self.plugin["xep_0384"].get_session_manager()
            await session_manager.refresh_device_list(OLDMEMO_NS, JID(cmd["jid"]).bare)
            devices = await session_manager.get_device_information(JID(cmd["jid"]).bare)
            active = [d for d in devices if (OLDMEMO_NS, True) in d.active]
            emit(
                "devices",
                jid=JID(cmd["jid"]).bare,
                devices=sorted(d.device_id for d in active),
                fingerprints={str(d.device_id): fingerprint(d.identity_key) for d in active},
            )
        elif kind == "set_device_list":
            item = ET.Element(f"{{{OLDMEMO_NS}}}list")
            for device in cmd["devices"]:
                ET.SubElement(item, f"{{{OLDMEMO_NS}}}device", {"id": str(device)})
            await self.plugin["xep_0060"].publish(
                self.boundjid.bare, f"{OLDMEMO_NS}.devicelist", id="current", payload=item
            )
            emit("done", cmd=kind)
        elif kind == "replace_sessions":
            session_manager = await self.plugin["xep_0384"].get_session_manager()
            devices = await session_manager.get_device_information(JID(cmd["jid"]).bare)
            for device in devices:
                await session_manager.replace_sessions(device)
            emit("done", cmd=kind)
        elif kind == "publish_avatar":
            # XEP-0084 as Conversations and Dino publish it: the data item first, named by its
            # SHA-1, then the metadata that announces it to contacts.
            data = base64.b64decode(cmd["data"])
            avatar = self.plugin["xep_0084"]
            await avatar.publish_avatar(data)
            await avatar.publish_avatar_metadata(
                {"id": avatar.generate_id(data), "type": cmd.get("type", "image/png"), "bytes": len(data)})
            emit("done", cmd=kind)
        elif kind == "subscribe":
            self.send_presence_subscription(pto=JID(cmd["jid"]).bare)
            emit("done", cmd=kind)
        else:
            emit("error", message=f"unknown command {kind!r}")
        return True


async def main() -> int:
    log_file = os.environ.get("PEER_LOG")
    logging.basicConfig(
        level=getattr(logging, os.environ.get("PEER_LOG_LEVEL", "WARNING")),
        filename=log_file if log_file else None,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    peer = Peer(os.environ["PEER_JID"], os.environ["PEER_PASSWORD"])
    peer.ca_certs = Path(os.environ["PEER_CA"])
    for plugin in ("xep_0030", "xep_0060", "xep_0084", "xep_0115", "xep_0163", "xep_0199", "xep_0280",
                   "xep_0334"):
        peer.register_plugin(plugin)
    if OMEMO:
        peer.register_plugin(
            "xep_0384", {"json_file_path": os.environ["PEER_STORE"]}, module=sys.modules[__name__]
        )
    peer.add_event_handler("session_start", lambda _: peer.plugin["xep_0280"].enable())
    peer.connect(os.environ.get("PEER_HOST", "127.0.0.1"), int(os.environ["PEER_PORT"]))
    try:
        await asyncio.wait_for(peer.ready.wait(), 30)
    except asyncio.TimeoutError:
        emit("error", message="not ready within 30 s")
        return 1

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            if not await peer.command(cmd):
                break
        except Exception as e:  # pylint: disable=broad-exception-caught
            emit("error", message=f"{type(e).__name__}: {e}")
    peer.disconnect()
    try:
        await asyncio.wait_for(peer.disconnected, 5)
    except Exception:  # pylint: disable=broad-exception-caught
        pass
    emit("bye")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
