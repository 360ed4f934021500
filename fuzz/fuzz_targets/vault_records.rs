//! The encrypted-storage decoders: records, wrapped keys and passphrase boxes read back from the
//! browser's storage, which anyone with access to the profile can alter. Never a panic, never an
//! allocation beyond the documented bounds; altered data is an error, not a different plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use sotto_vault::{PassphraseBox, Vault, WrappedKey};
use std::sync::OnceLock;

/// One vault for all runs (creating it runs Argon2id) and a record sealed by it.
fn fixture() -> &'static (Vault, Vec<u8>) {
    static FIXTURE: OnceLock<(Vault, Vec<u8>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (vault, _) = Vault::create(b"fuzz", sotto_vault::KdfParams::MINIMUM, &mut rng).unwrap();
        let sealed = vault.seal("record", b"plaintext", &mut rng).unwrap();
        (vault, sealed)
    })
}

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
