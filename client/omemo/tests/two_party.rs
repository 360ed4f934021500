//! Alice ↔ Bob end to end: prekey messages, replies, reordering, loss, duplicates, tampering,
//! ratchet steps, limits, pickles. Every failed decryption must leave the state unchanged.

// An integration-test crate: its helpers are test code too (clippy.toml only covers #[test] fns).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sotto_omemo::{
    account::{Account, AccountPickle, InboundSessionError, RemoteBundle},
    messages::{OmemoKeyMessage, PreKeySignalMessage, SignalMessage},
    payload::{self, KeyTransport, PayloadError},
    session::{receiver_chain::MAX_MESSAGES_AHEAD, DecryptionError, Session, SessionPickle},
};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn snapshot(session: &Session) -> String {
    serde_json::to_string(&session.pickle()).unwrap()
}

fn account_snapshot(account: &Account) -> String {
    serde_json::to_string(&account.pickle()).unwrap()
}

fn prekey(m: &OmemoKeyMessage) -> &PreKeySignalMessage {
    match m {
        OmemoKeyMessage::PreKey(p) => p,
        OmemoKeyMessage::Normal(_) => panic!("expected a prekey message"),
    }
}

/// Re-parse as the receiver would, from the bytes of the `<key>` element.
fn wire(m: &OmemoKeyMessage) -> OmemoKeyMessage {
    OmemoKeyMessage::from_bytes(m.as_bytes(), m.is_prekey()).unwrap()
}

struct Pair {
    rng: ChaCha20Rng,
    alice_account: Account,
    bob_account: Account,
    alice: Session,
    bob: Session,
}

/// Alice starts a session from Bob's bundle; Bob accepts her first message.
fn established(seed: u64) -> Pair {
    let mut rng = rng(seed);
    let alice_account = Account::new(&mut rng);
    let mut bob_account = Account::new(&mut rng);
    let bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();
    let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);
    let first = alice.encrypt(b"first").unwrap();
    let inbound = bob_account
        .create_inbound_session(prekey(&wire(&first)), &mut rng)
        .unwrap();
    assert_eq!(inbound.plaintext.as_slice(), b"first");
    Pair {
        rng,
        alice_account,
        bob_account,
        alice,
        bob: inbound.session,
    }
}

#[test]
fn prekey_messages_until_the_first_reply() {
    let mut rng = rng(1);
    let alice_account = Account::new(&mut rng);
    let mut bob_account = Account::new(&mut rng);
    assert_eq!(bob_account.unused_one_time_pre_keys(), 100);
    let bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();
    let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);

    let m0 = alice.encrypt(b"m0").unwrap();
    let m1 = alice.encrypt(b"m1").unwrap();
    assert!(m0.is_prekey() && m1.is_prekey());
    let used = prekey(&m0).pre_key_id().unwrap();
    assert_eq!(prekey(&m0).signed_pre_key_id(), 1);
    assert_eq!(prekey(&m0).identity_key(), alice_account.identity_key());
    assert_eq!(prekey(&m0).message().counter(), 0);

    let inbound = bob_account
        .create_inbound_session(prekey(&wire(&m0)), &mut rng)
        .unwrap();
    let mut bob = inbound.session;
    assert_eq!(inbound.plaintext.as_slice(), b"m0");
    assert_eq!(bob.remote_identity(), alice_account.identity_key());
    assert_eq!(
        bob.remote_identity().fingerprint(),
        alice_account.fingerprint()
    );
    // The used one-time prekey is no longer published.
    assert_eq!(bob_account.unused_one_time_pre_keys(), 99);
    assert!(bob_account
        .bundle()
        .pre_keys()
        .iter()
        .all(|(id, _)| *id != used));

    // A repeated prekey message (same base key) decrypts on the existing session.
    assert_eq!(bob.decrypt(&wire(&m1), &mut rng).unwrap().as_slice(), b"m1");
    assert_eq!(bob.base_key(), alice.base_key());

    // Bob answers; once Alice reads it she stops sending prekey messages.
    let r0 = bob.encrypt(b"r0").unwrap();
    assert!(!r0.is_prekey());
    assert!(!alice.is_acknowledged());
    assert_eq!(
        alice.decrypt(&wire(&r0), &mut rng).unwrap().as_slice(),
        b"r0"
    );
    assert!(alice.is_acknowledged());
    let m2 = alice.encrypt(b"m2").unwrap();
    assert!(!m2.is_prekey());
    assert_eq!(bob.decrypt(&wire(&m2), &mut rng).unwrap().as_slice(), b"m2");

    // After MAM catch-up the consumed key is deleted for good.
    assert_eq!(bob_account.remove_consumed_one_time_pre_keys(), 1);
    assert!(bob_account.replenish_one_time_pre_keys(100, &mut rng));
    assert_eq!(bob_account.unused_one_time_pre_keys(), 100);
    assert!(!bob_account.replenish_one_time_pre_keys(50, &mut rng));
}

#[test]
fn session_without_one_time_prekey() {
    let mut rng = rng(2);
    let alice_account = Account::new(&mut rng);
    let mut bob_account = Account::new(&mut rng);
    let b = bob_account.bundle();
    let bundle = RemoteBundle::new(
        &b.identity_key().to_bytes(),
        b.signed_pre_key_id(),
        &b.signed_pre_key().to_bytes(),
        b.signed_pre_key_signature(),
        Vec::<(u32, Vec<u8>)>::new(),
    )
    .unwrap();
    let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);
    let m0 = alice.encrypt(b"no opk").unwrap();
    assert_eq!(prekey(&m0).pre_key_id(), None);
    let inbound = bob_account
        .create_inbound_session(prekey(&wire(&m0)), &mut rng)
        .unwrap();
    assert_eq!(inbound.plaintext.as_slice(), b"no opk");
    assert_eq!(bob_account.unused_one_time_pre_keys(), 100);
}

#[test]
fn forged_bundle_is_rejected() {
    let mut rng = rng(3);
    let bob = Account::new(&mut rng);
    let b = bob.bundle();
    let mut sig = *b.signed_pre_key_signature();
    sig[5] ^= 1;
    let err = RemoteBundle::new(
        &b.identity_key().to_bytes(),
        b.signed_pre_key_id(),
        &b.signed_pre_key().to_bytes(),
        &sig,
        [(1u32, [0u8; 3])],
    );
    assert!(err.is_err());
    // Malformed one-time prekeys are skipped, not fatal.
    let ok = RemoteBundle::new(
        &b.identity_key().to_bytes(),
        b.signed_pre_key_id(),
        &b.signed_pre_key().to_bytes(),
        b.signed_pre_key_signature(),
        [
            (1u32, vec![0u8; 3]),
            (2, b.pre_keys()[0].1.to_bytes().to_vec()),
        ],
    )
    .unwrap();
    assert_eq!(ok.pre_keys().len(), 1);
    assert_eq!(ok.malformed_pre_keys(), 1);
}

#[test]
fn tampered_prekey_message_consumes_nothing() {
    let mut rng = rng(4);
    let alice_account = Account::new(&mut rng);
    let mut bob_account = Account::new(&mut rng);
    let bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();
    let mut alice = alice_account.create_outbound_session(&bundle, &mut rng);
    let m0 = alice.encrypt(b"m0").unwrap();
    let before = account_snapshot(&bob_account);

    // Flip the last byte of the inner SignalMessage (its MAC).
    let mut bytes = m0.as_bytes().to_vec();
    let inner = prekey(&m0).message().as_bytes();
    let start = bytes.windows(inner.len()).position(|w| w == inner).unwrap();
    bytes[start + inner.len() - 1] ^= 0x01;
    let forged = PreKeySignalMessage::from_bytes(&bytes).unwrap();
    assert_eq!(
        bob_account
            .create_inbound_session(&forged, &mut rng)
            .unwrap_err(),
        InboundSessionError::Decryption(DecryptionError::InvalidMac)
    );
    assert_eq!(account_snapshot(&bob_account), before, "account unchanged");
    assert_eq!(bob_account.unused_one_time_pre_keys(), 100);

    // Every single-bit flip anywhere in the message is rejected (or fails to parse).
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = m0.as_bytes().to_vec();
            b[i] ^= bit;
            if let Ok(m) = PreKeySignalMessage::from_bytes(&b) {
                assert!(
                    bob_account.create_inbound_session(&m, &mut rng).is_err(),
                    "flip at byte {i} bit {bit:#x} accepted"
                );
            }
        }
    }
    assert_eq!(account_snapshot(&bob_account), before);

    // A message naming an unknown one-time prekey.
    let mut other_bob = Account::new(&mut rng);
    assert!(matches!(
        other_bob.create_inbound_session(prekey(&m0), &mut rng),
        Err(InboundSessionError::UnknownOneTimePreKey(_)) | Err(InboundSessionError::Decryption(_))
    ));

    // The genuine message still works afterwards.
    assert!(bob_account
        .create_inbound_session(prekey(&m0), &mut rng)
        .is_ok());
}

#[test]
fn signed_prekey_rotation_with_grace_period() {
    let mut rng = rng(5);
    let alice_account = Account::new(&mut rng);
    let mut bob_account = Account::new(&mut rng);
    let old_bundle = RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();

    bob_account.rotate_signed_pre_key(1_000, 500, &mut rng);
    assert_eq!(bob_account.signed_pre_key().id(), 2);
    assert_eq!(bob_account.bundle().signed_pre_key_id(), 2);
    RemoteBundle::from_bundle(&bob_account.bundle()).unwrap();

    // A session built from the old bundle works during the grace period...
    let mut alice = alice_account.create_outbound_session(&old_bundle, &mut rng);
    let m0 = alice.encrypt(b"old spk").unwrap();
    bob_account.expire_signed_pre_keys(1_499);
    let ok = bob_account
        .create_inbound_session(prekey(&m0), &mut rng)
        .unwrap();
    assert_eq!(ok.plaintext.as_slice(), b"old spk");

    // ...and not after it.
    let mut alice2 = alice_account.create_outbound_session(&old_bundle, &mut rng);
    let m1 = alice2.encrypt(b"too late").unwrap();
    bob_account.expire_signed_pre_keys(1_500);
    assert_eq!(
        bob_account
            .create_inbound_session(prekey(&m1), &mut rng)
            .unwrap_err(),
        InboundSessionError::UnknownSignedPreKey(1)
    );
}

#[test]
fn out_of_order_duplicates_and_lost_messages() {
    let Pair {
        mut rng,
        mut alice,
        mut bob,
        ..
    } = established(6);
    let reply = bob.encrypt(b"ack").unwrap();
    alice.decrypt(&reply, &mut rng).unwrap();

    let msgs: Vec<_> = (0..6)
        .map(|i| alice.encrypt(format!("a{i}").as_bytes()).unwrap())
        .collect();
    // Deliver 4, 1, 2 (0 and 3 late, 5 lost).
    assert_eq!(
        bob.decrypt(&wire(&msgs[4]), &mut rng).unwrap().as_slice(),
        b"a4"
    );
    assert_eq!(bob.skipped_message_keys(), 4);
    assert_eq!(
        bob.decrypt(&wire(&msgs[1]), &mut rng).unwrap().as_slice(),
        b"a1"
    );
    assert_eq!(
        bob.decrypt(&wire(&msgs[2]), &mut rng).unwrap().as_slice(),
        b"a2"
    );
    assert_eq!(bob.skipped_message_keys(), 2);

    // Duplicate of a delivered message: a specific, ignorable error; state unchanged.
    let before = snapshot(&bob);
    assert_eq!(
        bob.decrypt(&wire(&msgs[2]), &mut rng).unwrap_err(),
        DecryptionError::Duplicate {
            counter: msgs_counter(&msgs[2])
        }
    );
    assert_eq!(snapshot(&bob), before);

    assert_eq!(
        bob.decrypt(&wire(&msgs[0]), &mut rng).unwrap().as_slice(),
        b"a0"
    );
    assert_eq!(
        bob.decrypt(&wire(&msgs[3]), &mut rng).unwrap().as_slice(),
        b"a3"
    );
    assert_eq!(bob.skipped_message_keys(), 0);

    // Message 5 is lost; the conversation goes on in both directions.
    let later = alice.encrypt(b"later").unwrap();
    assert_eq!(bob.decrypt(&later, &mut rng).unwrap().as_slice(), b"later");
    let back = bob.encrypt(b"back").unwrap();
    assert_eq!(alice.decrypt(&back, &mut rng).unwrap().as_slice(), b"back");
}

fn msgs_counter(m: &OmemoKeyMessage) -> u32 {
    match m {
        OmemoKeyMessage::Normal(s) => s.counter(),
        OmemoKeyMessage::PreKey(p) => p.message().counter(),
    }
}

#[test]
fn tampering_is_rejected_without_state_change() {
    let Pair {
        mut rng,
        mut alice,
        mut bob,
        ..
    } = established(7);
    let reply = bob.encrypt(b"ack").unwrap();
    alice.decrypt(&reply, &mut rng).unwrap();

    let body = payload::encrypt(b"secret text", &mut rng);
    let key = alice.encrypt(body.key_material.as_bytes()).unwrap();
    let before = snapshot(&bob);

    // Flip every bit of the serialised SignalMessage in turn.
    let bytes = key.as_bytes().to_vec();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            if let Ok(m) = SignalMessage::from_bytes(&b) {
                let err = bob
                    .decrypt(&OmemoKeyMessage::Normal(m), &mut rng)
                    .unwrap_err();
                assert!(
                    matches!(
                        err,
                        DecryptionError::InvalidMac
                            | DecryptionError::TooFarAhead { .. }
                            | DecryptionError::Duplicate { .. }
                    ),
                    "byte {i} bit {bit}: {err:?}"
                );
            }
        }
    }
    // Truncated protobufs do not parse.
    for len in 0..bytes.len() - 8 {
        let _ = SignalMessage::from_bytes(&bytes[..len]);
    }
    assert_eq!(snapshot(&bob), before, "state untouched by forgeries");

    // The genuine message decrypts; a tampered payload does not authenticate.
    let material = bob.decrypt(&wire(&key), &mut rng).unwrap();
    let mut payload_bytes = body.ciphertext.clone();
    payload_bytes[3] ^= 0x10;
    assert_eq!(
        payload::decrypt(&material, &body.iv, &payload_bytes).unwrap_err(),
        PayloadError::Authentication
    );
    assert_eq!(
        payload::decrypt(&material, &body.iv, &body.ciphertext)
            .unwrap()
            .as_slice(),
        b"secret text"
    );

    // A message for another device (Carol's session with Alice) fails the MAC at Bob's.
    let mut carol_account = Account::new(&mut rng);
    let alice_account = Account::new(&mut rng);
    let bundle = RemoteBundle::from_bundle(&carol_account.bundle()).unwrap();
    let mut to_carol = alice_account.create_outbound_session(&bundle, &mut rng);
    let first = to_carol.encrypt(b"hi carol").unwrap();
    let mut carol = carol_account
        .create_inbound_session(prekey(&first), &mut rng)
        .unwrap()
        .session;
    let _ = carol.encrypt(b"x").unwrap();
    let stray = OmemoKeyMessage::Normal(prekey(&to_carol.encrypt(b"y").unwrap()).message().clone());
    let before = snapshot(&bob);
    assert_eq!(
        bob.decrypt(&stray, &mut rng).unwrap_err(),
        DecryptionError::InvalidMac
    );
    // A prekey message of another session is not for this one.
    assert_eq!(
        bob.decrypt(&first, &mut rng).unwrap_err(),
        DecryptionError::SessionMismatch
    );
    assert_eq!(snapshot(&bob), before);
}

#[test]
fn ratchet_steps_both_ways_and_old_chains() {
    let Pair {
        mut rng,
        mut alice,
        mut bob,
        ..
    } = established(8);
    let mut delayed = Vec::new();
    let mut ratchet_keys = std::collections::HashSet::new();
    for round in 0..10 {
        let a = alice.encrypt(format!("a{round}").as_bytes()).unwrap();
        let late = alice.encrypt(format!("late{round}").as_bytes()).unwrap();
        if let OmemoKeyMessage::Normal(m) = &a {
            ratchet_keys.insert(m.ratchet_key());
        }
        delayed.push((late, format!("late{round}")));
        assert_eq!(
            bob.decrypt(&wire(&a), &mut rng).unwrap().as_slice(),
            format!("a{round}").as_bytes()
        );
        for j in 0..3 {
            let b = bob.encrypt(format!("b{round}.{j}").as_bytes()).unwrap();
            if let OmemoKeyMessage::Normal(m) = &b {
                ratchet_keys.insert(m.ratchet_key());
            }
            assert_eq!(
                alice.decrypt(&wire(&b), &mut rng).unwrap().as_slice(),
                format!("b{round}.{j}").as_bytes()
            );
        }
    }
    assert!(ratchet_keys.len() >= 19, "a new ratchet key every turn");
    // Messages from the last few (≤ 5) of Alice's chains still decrypt late; older ones are gone.
    let mut ok = 0;
    for (m, text) in delayed.iter().rev() {
        match bob.decrypt(&wire(m), &mut rng) {
            Ok(pt) => {
                assert_eq!(pt.as_slice(), text.as_bytes());
                ok += 1;
            }
            Err(e) => assert_eq!(e, DecryptionError::InvalidMac, "evicted chain"),
        }
    }
    assert!((4..=5).contains(&ok), "{ok}");
}

#[test]
fn skipping_is_bounded() {
    let Pair {
        mut rng,
        mut alice,
        mut bob,
        ..
    } = established(9);
    let reply = bob.encrypt(b"ack").unwrap();
    alice.decrypt(&reply, &mut rng).unwrap();

    let msgs: Vec<_> = (0..=MAX_MESSAGES_AHEAD + 1)
        .map(|_| alice.encrypt(b"x").unwrap())
        .collect();
    let before = snapshot(&bob);
    let last = msgs.last().unwrap();
    assert!(matches!(
        bob.decrypt(last, &mut rng).unwrap_err(),
        DecryptionError::TooFarAhead { .. }
    ));
    assert_eq!(snapshot(&bob), before);
    bob.decrypt(&msgs[MAX_MESSAGES_AHEAD as usize], &mut rng)
        .unwrap();
    assert_eq!(bob.skipped_message_keys(), MAX_MESSAGES_AHEAD as usize);
    bob.decrypt(last, &mut rng).unwrap();
    bob.decrypt(&msgs[0], &mut rng).unwrap();
    assert_eq!(bob.skipped_message_keys(), MAX_MESSAGES_AHEAD as usize - 1);
}

#[test]
fn key_transport_message() {
    let Pair {
        mut rng,
        mut alice,
        mut bob,
        ..
    } = established(10);
    let kt = KeyTransport::generate(&mut rng);
    let m = alice.encrypt(kt.as_bytes()).unwrap();
    assert_eq!(
        bob.decrypt(&wire(&m), &mut rng).unwrap().as_slice(),
        kt.as_bytes()
    );
}

#[test]
fn pickles_round_trip_and_keep_working() {
    let Pair {
        mut rng,
        alice_account,
        bob_account,
        mut alice,
        bob,
    } = established(11);

    let json = serde_json::to_string(&bob_account.pickle()).unwrap();
    let pickle: AccountPickle = serde_json::from_str(&json).unwrap();
    assert_eq!(pickle.version(), 1);
    let restored = Account::from_pickle(&pickle).unwrap();
    assert_eq!(restored.identity_key(), bob_account.identity_key());
    assert_eq!(restored.bundle(), bob_account.bundle());
    assert_eq!(serde_json::to_string(&restored.pickle()).unwrap(), json);
    assert!(!format!("{pickle:?}").contains("identity"));
    let _ = alice_account;

    let bob_json = serde_json::to_string(&bob.pickle()).unwrap();
    drop(bob);
    let pickle: SessionPickle = serde_json::from_str(&bob_json).unwrap();
    let mut bob = Session::from_pickle(&pickle).unwrap();
    assert_eq!(snapshot(&bob), bob_json);

    let m = alice.encrypt(b"after restore").unwrap();
    assert_eq!(
        bob.decrypt(&m, &mut rng).unwrap().as_slice(),
        b"after restore"
    );
    let r = bob.encrypt(b"reply").unwrap();
    let alice_json = serde_json::to_string(&alice.pickle()).unwrap();
    let mut alice = Session::from_pickle(&serde_json::from_str(&alice_json).unwrap()).unwrap();
    assert_eq!(alice.decrypt(&r, &mut rng).unwrap().as_slice(), b"reply");

    // Unknown versions are refused.
    let future = bob_json.replacen("\"version\":1", "\"version\":99", 1);
    let future: SessionPickle = serde_json::from_str(&future).unwrap();
    assert!(Session::from_pickle(&future).is_err());
}

#[test]
fn debug_output_has_no_secrets() {
    let Pair {
        alice_account,
        alice,
        ..
    } = established(12);
    let pickle = alice.pickle();
    let json: serde_json::Value = serde_json::to_value(&pickle).unwrap();
    let root: Vec<u8> = serde_json::from_value(json["root_key"].clone()).unwrap();
    let root_hex = hex::encode(&root);
    let text = format!("{alice:?} {alice_account:?} {pickle:?}");
    assert!(!text.contains(&root_hex[..16]), "{text}");
    assert!(
        !text.contains(format!("{:?}", &root[..4]).trim_matches(['[', ']'])),
        "{text}"
    );
    assert!(text.contains("Session {"), "{text}");
}
