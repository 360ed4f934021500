//! Messages produced by python-oldmemo (an independent OMEMO 0.3 implementation), committed in
//! `tests/vectors/oldmemo.json` so that this check runs without Python. Regenerate with
//! `client/omemo/interop/run.sh capture_oldmemo_vectors`.

// An integration-test crate: its helpers are test code too (clippy.toml only covers #[test] fns).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use serde_json::Value;
use sotto_omemo::{
    account::{Account, AccountPickle},
    messages::{OmemoKeyMessage, PreKeySignalMessage},
    payload,
    session::{Session, SessionPickle},
};

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/oldmemo.json")).unwrap()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn oldmemo_prekey_message_decrypts() {
    let v = vectors();
    let pickle: AccountPickle = serde_json::from_value(v["account_pickle"].clone()).unwrap();
    let mut account = Account::from_pickle(&pickle).unwrap();
    let m = &v["prekey_message"];
    let message = PreKeySignalMessage::from_bytes(&h(&m["key"])).unwrap();
    // python-oldmemo leaves registrationId unset and always uses a one-time prekey.
    assert_eq!(message.registration_id(), None);
    assert!(message.pre_key_id().is_some());
    // Byte-exact re-encoding is not required (the MAC covers received bytes), but the
    // wire bytes we keep are the received ones.
    assert_eq!(message.as_bytes(), h(&m["key"]).as_slice());
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let inbound = account.create_inbound_session(&message, &mut rng).unwrap();
    assert_eq!(inbound.plaintext.len(), 32, "key(16) || tag(16)");
    let text = payload::decrypt(&inbound.plaintext, &h(&m["iv"]), &h(&m["payload"])).unwrap();
    assert_eq!(text.as_slice(), m["text"].as_str().unwrap().as_bytes());
    assert_eq!(h(&m["iv"]).len(), 12);
}

#[test]
fn oldmemo_normal_message_decrypts_on_the_pickled_session() {
    let v = vectors();
    let pickle: SessionPickle = serde_json::from_value(v["session_after_reply"].clone()).unwrap();
    let mut session = Session::from_pickle(&pickle).unwrap();
    let m = &v["normal_message"];
    let message = OmemoKeyMessage::from_bytes(&h(&m["key"]), false).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let material = session.decrypt(&message, &mut rng).unwrap();
    let text = payload::decrypt(&material, &h(&m["iv"]), &h(&m["payload"])).unwrap();
    assert_eq!(text.as_slice(), m["text"].as_str().unwrap().as_bytes());

    // A flipped bit in oldmemo's MAC is rejected and the session is unchanged.
    let mut session = Session::from_pickle(&pickle).unwrap();
    let mut bytes = h(&m["key"]);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = OmemoKeyMessage::from_bytes(&bytes, false).unwrap();
    assert!(session.decrypt(&forged, &mut rng).is_err());
    assert!(session.decrypt(&message, &mut rng).is_ok());
}
