//! Property tests: random interleavings of sends and deliveries across two parties decrypt
//! exactly once; decoders of untrusted bytes never panic.

// An integration-test crate: its helpers are test code too (clippy.toml only covers #[test] fns).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sotto_omemo::{
    account::{Account, RemoteBundle},
    keys::PublicKey,
    messages::{OmemoKeyMessage, PreKeySignalMessage, SignalMessage},
    payload,
    session::{double_ratchet::MAX_RECEIVER_CHAINS, DecryptionError, Session},
};

#[derive(Debug, Clone)]
enum Op {
    Send { from_alice: bool },
    Deliver(usize),
    Redeliver(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|from_alice| Op::Send { from_alice }),
        3 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Redeliver),
    ]
}

struct Sent {
    to_alice: bool,
    message: OmemoKeyMessage,
    text: Vec<u8>,
    ratchet_key: PublicKey,
    delivered: bool,
}

fn ratchet_key(m: &OmemoKeyMessage) -> PublicKey {
    match m {
        OmemoKeyMessage::Normal(s) => s.ratchet_key(),
        OmemoKeyMessage::PreKey(p) => p.message().ratchet_key(),
    }
}

/// The sender's ratchet keys the receiver has seen, oldest first.
fn recent(seen: &[PublicKey], key: &PublicKey) -> Option<bool> {
    seen.iter()
        .position(|k| k == key)
        .map(|pos| seen.len() - pos <= MAX_RECEIVER_CHAINS)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn interleavings_decrypt_exactly_once(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..80)) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice_account = Account::new(&mut rng);
        let mut bob_account = Account::new(&mut rng);
        let bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();
        let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);
        let first = alice.encrypt(b"hello").unwrap();
        let OmemoKeyMessage::PreKey(p) = &first else { panic!() };
        let mut bob = bob_account.create_inbound_session(p, &mut rng).unwrap().session;
        // Ratchet keys each side has received from the other, in order.
        let mut seen_by_bob = vec![ratchet_key(&first)];
        let mut seen_by_alice: Vec<PublicKey> = Vec::new();
        let mut sent: Vec<Sent> = Vec::new();

        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Send { from_alice } => {
                    let text = format!("message {n}").into_bytes();
                    let session: &mut Session = if from_alice { &mut alice } else { &mut bob };
                    let message = session.encrypt(&text).unwrap();
                    let ratchet_key = ratchet_key(&message);
                    sent.push(Sent { to_alice: !from_alice, message, text, ratchet_key, delivered: false });
                }
                Op::Deliver(i) | Op::Redeliver(i) => {
                    if sent.is_empty() { continue; }
                    let redeliver = matches!(op, Op::Redeliver(_));
                    let candidates: Vec<usize> = (0..sent.len()).filter(|&j| sent[j].delivered == redeliver).collect();
                    if candidates.is_empty() { continue; }
                    let j = candidates[i % candidates.len()];
                    let s = &mut sent[j];
                    let wire = OmemoKeyMessage::from_bytes(s.message.as_bytes(), s.message.is_prekey()).unwrap();
                    let (session, seen) = if s.to_alice { (&mut alice, &mut seen_by_alice) } else { (&mut bob, &mut seen_by_bob) };
                    let result = session.decrypt(&wire, &mut rng);
                    match (redeliver, recent(seen, &s.ratchet_key), result) {
                        (false, None | Some(true), Ok(pt)) => {
                            prop_assert_eq!(pt.as_slice(), s.text.as_slice());
                            s.delivered = true;
                            if !seen.contains(&s.ratchet_key) { seen.push(s.ratchet_key); }
                        }
                        (false, Some(true) | None, Err(e)) => prop_assert!(false, "message {} failed: {:?}", j, e),
                        (true, Some(true), Err(DecryptionError::Duplicate { .. })) => {}
                        (_, Some(false), Err(_)) => {} // its chain was evicted
                        (true, _, r) => prop_assert!(false, "redelivery of {} gave {:?}", j, r.map(|p| p.to_vec())),
                        (false, Some(false), Ok(pt)) => {
                            prop_assert_eq!(pt.as_slice(), s.text.as_slice());
                            s.delivered = true;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn untrusted_decoders_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        more in proptest::collection::vec(any::<u8>(), 0..80),
        prekey in any::<bool>(),
    ) {
        let _ = OmemoKeyMessage::from_bytes(&bytes, prekey);
        let _ = SignalMessage::from_bytes(&bytes);
        let _ = PreKeySignalMessage::from_bytes(&bytes);
        let _ = RemoteBundle::new(&bytes, 1, &more, &bytes, [(1u32, more.clone()), (2, bytes.clone())]);
        let _ = payload::decrypt(&more, &bytes, &bytes);
        let _ = payload::decrypt(&bytes, &more, &more);
        if let Ok(k) = sotto_omemo::keys::IdentityKey::from_bytes(&more) {
            let _ = k.verify(&bytes, &bytes);
        }
    }

    #[test]
    fn garbage_never_changes_a_session(bytes in proptest::collection::vec(any::<u8>(), 0..200), seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice_account = Account::new(&mut rng);
        let mut bob_account = Account::new(&mut rng);
        let bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();
        let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);
        let first = alice.encrypt(b"hello").unwrap();
        let OmemoKeyMessage::PreKey(p) = &first else { panic!() };
        let mut bob = bob_account.create_inbound_session(p, &mut rng).unwrap().session;
        let before = serde_json::to_string(&bob.pickle()).unwrap();
        // Prefix with a valid header so the decoder gets further.
        let mut versioned = vec![0x33];
        versioned.extend_from_slice(&bytes);
        for candidate in [&bytes, &versioned] {
            for prekey in [false, true] {
                if let Ok(m) = OmemoKeyMessage::from_bytes(candidate, prekey) {
                    prop_assert!(bob.decrypt(&m, &mut rng).is_err());
                }
            }
        }
        prop_assert_eq!(serde_json::to_string(&bob.pickle()).unwrap(), before);
    }
}
