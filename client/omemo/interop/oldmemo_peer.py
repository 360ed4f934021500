"""A scripted OMEMO 0.3 peer built on python-oldmemo (Syndace), an implementation nobody on the
Sotto team wrote. Driven by `tests/interop_oldmemo.rs` (see interop/README.md).

Usage: oldmemo_peer.py STATE_FILE COMMAND < request.json > response.json
Commands:
  bundle    -> our bundle (hex fields) for Sotto to build an outbound session from
  receive   <- {"bundle", "key", "prekey", "iv", "payload", "reply"}: decrypt a message Sotto
               produced (building the session passively for a prekey message), then encrypt
               `reply` back on the same session
  initiate  <- {"bundle", "text"}: start a session from Sotto's bundle (verifies its XEdDSA
               signature) and encrypt `text`
All binary values are hex. The peer's state (identity, prekeys, sessions) persists in STATE_FILE.
"""

import asyncio
import base64
import json
import sys
import xml.etree.ElementTree as ET

from omemo.storage import Just, Nothing, Storage
from oldmemo import etree as oetree
from oldmemo.oldmemo import (
    ContentImpl,
    EncryptedKeyMaterialImpl,
    KeyExchangeImpl,
    Oldmemo,
)

NS = "{eu.siacs.conversations.axolotl}"
OWN_JID, OWN_DEVICE = "oldmemo@example.org", 1001
SOTTO_JID, SOTTO_DEVICE = "sotto@example.org", 4242


class FileStorage(Storage):
    def __init__(self, path):
        super().__init__(disable_cache=True)
        self.path = path
        try:
            with open(path) as f:
                self.data = json.load(f)
        except FileNotFoundError:
            self.data = {}

    async def _load(self, key):
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key, value):
        self.data[key] = value
        self.flush()

    async def _delete(self, key):
        self.data.pop(key, None)
        self.flush()

    def flush(self):
        with open(self.path, "w") as f:
            json.dump(self.data, f)


def b64hex(text):
    return base64.b64decode(text).hex()


def hexb64(value):
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def bundle_to_json(elt):
    spk = elt.find(f"{NS}signedPreKeyPublic")
    return {
        "identity_key": b64hex(elt.find(f"{NS}identityKey").text),
        "signed_pre_key_id": int(spk.get("signedPreKeyId")),
        "signed_pre_key": b64hex(spk.text),
        "signed_pre_key_signature": b64hex(elt.find(f"{NS}signedPreKeySignature").text),
        "pre_keys": [
            [int(pk.get("preKeyId")), b64hex(pk.text)] for pk in elt.iter(f"{NS}preKeyPublic")
        ],
    }


def json_to_bundle_elt(b):
    elt = ET.Element(f"{NS}bundle")
    ET.SubElement(elt, f"{NS}signedPreKeyPublic",
                  attrib={"signedPreKeyId": str(b["signed_pre_key_id"])}).text = hexb64(b["signed_pre_key"])
    ET.SubElement(elt, f"{NS}signedPreKeySignature").text = hexb64(b["signed_pre_key_signature"])
    ET.SubElement(elt, f"{NS}identityKey").text = hexb64(b["identity_key"])
    pks = ET.SubElement(elt, f"{NS}prekeys")
    for pk_id, pk in b["pre_keys"]:
        ET.SubElement(pks, f"{NS}preKeyPublic", attrib={"preKeyId": str(pk_id)}).text = hexb64(pk)
    return elt


async def main(state_path, command):
    backend = Oldmemo(FileStorage(state_path))
    if await backend.get_num_visible_pre_keys() == 0:
        await backend.generate_pre_keys(100)
    request = json.load(sys.stdin) if command != "bundle" else {}

    if command == "bundle":
        bundle = await backend.get_bundle(OWN_JID, OWN_DEVICE)
        return bundle_to_json(oetree.serialize_bundle(bundle))

    if command == "receive":
        key = bytes.fromhex(request["key"])
        if request["prekey"]:
            # oldmemo needs the Ed25519 sign bit of the sender's identity, which OMEMO 0.3 carries
            # in the bundle's signature (sig[63] & 0x80).
            sig = bytes.fromhex(request["bundle"]["signed_pre_key_signature"])
            key_exchange, authenticated = KeyExchangeImpl.parse(key, bool(sig[63] >> 7))
            ekm = EncryptedKeyMaterialImpl.parse(authenticated, SOTTO_JID, SOTTO_DEVICE)
            session, pkm = await backend.build_session_passive(SOTTO_JID, SOTTO_DEVICE, key_exchange, ekm)
        else:
            session = await backend.load_session(SOTTO_JID, SOTTO_DEVICE)
            ekm = EncryptedKeyMaterialImpl.parse(key, SOTTO_JID, SOTTO_DEVICE)
            pkm = await backend.decrypt_key_material(session, ekm)
        response = {"key_material_length": len(pkm.key + pkm.auth_tag)}
        if request.get("payload") is not None:
            content = ContentImpl(bytes.fromhex(request["payload"]), bytes.fromhex(request["iv"]))
            response["plaintext"] = (await backend.decrypt_plaintext(content, pkm)).decode("utf-8")
        if request.get("reply") is not None:
            content, pkm = await backend.encrypt_plaintext(request["reply"].encode("utf-8"))
            ekm = await backend.encrypt_key_material(session, pkm)
            response["reply"] = {
                "key": ekm.serialize().hex(),
                "iv": content.initialization_vector.hex(),
                "payload": content.ciphertext.hex(),
            }
        await backend.store_session(session)
        return response

    if command == "initiate":
        bundle = oetree.parse_bundle(json_to_bundle_elt(request["bundle"]), SOTTO_JID, SOTTO_DEVICE)
        content, pkm = await backend.encrypt_plaintext(request["text"].encode("utf-8"))
        session, ekm = await backend.build_session_active(SOTTO_JID, SOTTO_DEVICE, bundle, pkm)
        key, _sign_bit = session.key_exchange.serialize(ekm.serialize())
        await backend.store_session(session)
        return {
            "key": key.hex(),
            "prekey": True,
            "iv": content.initialization_vector.hex(),
            "payload": content.ciphertext.hex(),
        }

    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2]))
    json.dump(result, sys.stdout)
