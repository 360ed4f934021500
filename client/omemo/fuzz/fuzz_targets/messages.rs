//! Decoders of untrusted bytes: `<key>` contents (both kinds) and bundle parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_omemo::{
    account::RemoteBundle,
    keys::IdentityKey,
    messages::{OmemoKeyMessage, PreKeySignalMessage, SignalMessage},
    payload,
};

fuzz_target!(|data: &[u8]| {
    for prekey in [false, true] {
        if let Ok(m) = OmemoKeyMessage::from_bytes(data, prekey) {
            // Re-decoding what we decoded gives the same message.
            let again = OmemoKeyMessage::from_bytes(m.as_bytes(), prekey).ok();
            assert_eq!(again.as_ref(), Some(&m));
        }
    }
    let _ = SignalMessage::from_bytes(data);
    let _ = PreKeySignalMessage::from_bytes(data);
    let (a, b) = data.split_at(data.len() / 2);
    let _ = RemoteBundle::new(a, 1, b, data, [(1u32, a), (2, b)]);
    if let Ok(ik) = IdentityKey::from_bytes(a) {
        let _ = ik.verify(b, b);
    }
    let _ = payload::decrypt(a, b, data);
});
