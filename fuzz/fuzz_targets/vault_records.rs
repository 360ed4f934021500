//! The encrypted-storage decoders: records, wrapped keys and passphrase boxes read back from the
//! browser's storage, which anyone with access to the profile can alter. Never a panic, never an
//! allocation beyond the documented bounds; altered data is an error, not a different plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_vault::{PassphraseBox, Vault, WrappedKey};
use std::sync::OnceLock;

/// One vault for all runs (creating it runs Argon2id) and a record sealed by it.
fn fixture() -> &'static (Vault, Vec<u8>) {
    static FIXTURE: OnceLock<(Vault, Vec<u8>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = Counter(1);
        let (vault, _) = Vault::create(b"fuzz", sotto_vault::KdfParams::MINIMUM, &mut rng).unwrap();
        let sealed = vault.seal("record", b"plaintext", &mut rng).unwrap();
        (vault, sealed)
    })
}

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
    let (vault, sealed) = fixture();
    match vault.open("record", data) {
        // Only the genuine record opens.
        Ok(plain) => assert!(data == sealed.as_slice() && &**plain == b"plaintext"),
        Err(_) => assert!(data != sealed.as_slice()),
    }
    // Decoding never runs the KDF, so this stays cheap whatever the parameters claim.
    let _ = WrappedKey::from_bytes(data);
    if let Ok(b) = PassphraseBox::from_bytes(data) {
        assert_eq!(b.to_bytes(), data);
    }
});
