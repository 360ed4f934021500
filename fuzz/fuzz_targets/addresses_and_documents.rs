//! Addresses and saved documents: JIDs arrive in every stanza, passwords are typed by anyone, and
//! the OMEMO device document is read back from storage. Never a panic; a prepared JID prepares
//! to itself again (the session re-parses addresses the server already prepared and compares them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use sotto_session::jid::{saslprep, Jid};
use sotto_session::omemo::Omemo;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(jid) = Jid::new(text) {
            let again = Jid::new(jid.as_str()).expect("a prepared JID parses");
            assert_eq!(again, jid, "preparing is idempotent");
        }
        let _ = saslprep(text);
    }
    let own = "alice@example.org".parse().expect("jid");
    let _ = Omemo::restore(own, data, &mut ChaCha20Rng::seed_from_u64(1));
});
