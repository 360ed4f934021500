//! Addresses and saved documents: JIDs arrive in every stanza, passwords are typed by anyone, and
//! the OMEMO device document is read back from storage. Never a panic; a prepared JID prepares
//! to itself again (the session re-parses addresses the server already prepared and compares them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_session::jid::{saslprep, Jid};
use sotto_session::omemo::Omemo;

struct Counter(u64);
impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for Counter {}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(jid) = Jid::new(text) {
            let again = Jid::new(jid.as_str()).expect("a prepared JID parses");
            assert_eq!(again, jid, "preparing is idempotent");
        }
        let _ = saslprep(text);
    }
    let own = "alice@example.org".parse().expect("jid");
    let _ = Omemo::restore(own, data, &mut Counter(1));
});
