//! Session decryption of near-valid and arbitrary messages, with MAC checks disabled by the
//! `insecure-fuzzing-skip-mac` feature so that the ratchet, the skipped-key store and CBC are
//! reached. Input: byte 0 selects a genuine message (or raw mode), then (offset, xor) pairs edit
//! it. Invariant: no panic, and a failed decryption leaves the session unchanged.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sotto_omemo::{
    account::{Account, RemoteBundle},
    messages::OmemoKeyMessage,
    session::{Session, SessionPickle},
};

struct Fixture {
    bob: SessionPickle,
    genuine: Vec<OmemoKeyMessage>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let alice_account = Account::new(&mut rng);
        let mut bob_account = Account::new(&mut rng);
        let bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();
        let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);
        let first = alice.encrypt(&[1; 32]).unwrap();
        let OmemoKeyMessage::PreKey(p) = &first else {
            unreachable!()
        };
        let mut bob = bob_account.create_inbound_session(p, &mut rng).unwrap().session;
        let mut genuine = vec![first.clone(), alice.encrypt(&[2; 32]).unwrap()];
        let reply = bob.encrypt(&[3; 32]).unwrap();
        alice.decrypt(&reply, &mut rng).unwrap();
        for i in 0..4u8 {
            genuine.push(alice.encrypt(&[i; 32]).unwrap());
        }
        Fixture {
            bob: bob.pickle(),
            genuine,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Some((&selector, edits)) = data.split_first() else {
        return;
    };
    let (bytes, prekey) = match fixture.genuine.get(usize::from(selector)) {
        Some(m) => {
            let mut bytes = m.as_bytes().to_vec();
            for pair in edits.chunks_exact(2) {
                if !bytes.is_empty() {
                    let at = usize::from(pair[0]) % bytes.len();
                    bytes[at] ^= pair[1];
                }
            }
            (bytes, m.is_prekey())
        }
        None => (edits.to_vec(), selector & 1 == 1),
    };
    let Ok(message) = OmemoKeyMessage::from_bytes(&bytes, prekey) else {
        return;
    };
    let mut bob = Session::from_pickle(&fixture.bob).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let before = bob.pickle();
    if bob.decrypt(&message, &mut rng).is_err() {
        let after = bob.pickle();
        assert!(
            format_pickle(&before) == format_pickle(&after),
            "a failed decryption changed the session"
        );
    }
});

fn format_pickle(p: &SessionPickle) -> Vec<u8> {
    serde_json::to_vec(p).unwrap()
}
