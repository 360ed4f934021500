//! Sotto's OMEMO against vodozemac's Olm doing the equivalent work, side by side:
//! session setup, 1 KiB encrypt, 1 KiB decrypt, encrypt to 10 devices.
//!
//! "Equivalent": an OMEMO message is an AES-128-GCM payload plus one ratchet message per device
//! carrying the 32-byte key material; an Olm message carries the 1 KiB body in the ratchet
//! message itself (one per device).
//!
//! Session setup is, on both sides: Alice starts a session from Bob's published keys and
//! encrypts a first (prekey) message, Bob creates the inbound session from it and encrypts his
//! first reply. That is the point where both can send; the reply is included because Olm creates
//! Bob's first sending ratchet lazily, in that encrypt, while libsignal (and so OMEMO) creates it
//! while decrypting Alice's message. Bob's account is reused and one-time-key bookkeeping
//! happens outside the timing on both sides. X25519 operations per setup:
//!
//! - sotto-omemo (X3DH as libsignal): Alice 2 key generations (base key, ratchet key) and 5 DH
//!   (DH1–DH4, DH4 with the one-time prekey, plus libsignal's initial ratchet step against
//!   Bob's signed prekey); Bob 6 DH (DH1–DH4, the mirror of Alice's ratchet step, his own
//!   ratchet step) and 1 key generation. Total 11 DH + 3 key generations.
//! - vodozemac-olm (Olm's 3DH): Alice 2 key generations and 3 DH; her first sending chain comes
//!   straight from the 3DH secret, so Bob needs no DH to receive on it; Bob 3 DH, then 1 key
//!   generation + 1 DH in his reply. Total 7 DH + 3 key generations.
//!
//! So OMEMO inherently does 4 more DH per setup: DH4 with the one-time prekey on both sides, and
//! libsignal's initial ratchet step (Alice's DH with Bob's signed prekey and Bob's mirror of it)
//! where Olm uses the 3DH output directly. Bob's own ratchet step (1 key generation + 1 DH) is
//! the same work on both sides; without Bob's reply in the timing it was charged to OMEMO only.
//! Not timed on either side: checking the peer's published keys (OMEMO: the XEdDSA signature on
//! the signed prekey, once per fetched bundle in `RemoteBundle::new`, about the cost of one DH;
//! Olm: vodozemac does no check, Matrix verifies one-time-key signatures above it).

// Bench code: unwrap is fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sotto_omemo::{
    account::{Account, RemoteBundle},
    messages::OmemoKeyMessage,
    payload,
    session::Session,
};
use vodozemac::olm::{Account as OlmAccount, OlmMessage, Session as OlmSession, SessionConfig};

const BODY: [u8; 1024] = [0x61; 1024];

fn sotto_pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let alice = Account::new(rng);
    let mut bob = Account::new(rng);
    let bundle = RemoteBundle::from_bundle(&bob.bundle()).unwrap();
    let mut a = alice.create_outbound_session(&bundle, rng);
    let first = a.encrypt(&[0; 32]).unwrap();
    let OmemoKeyMessage::PreKey(p) = &first else {
        panic!()
    };
    let mut b = bob.create_inbound_session(p, rng).unwrap().session;
    let reply = b.encrypt(&[0; 32]).unwrap();
    a.decrypt(&reply, rng).unwrap();
    (a, b)
}

fn olm_pair() -> (OlmSession, OlmSession) {
    let alice = OlmAccount::new();
    let mut bob = OlmAccount::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    bob.mark_keys_as_published();
    let mut a =
        alice.create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk);
    let OlmMessage::PreKey(m) = a.encrypt([0u8; 32]) else {
        panic!()
    };
    let mut b = bob
        .create_inbound_session(alice.curve25519_key(), &m)
        .unwrap()
        .session;
    let reply = b.encrypt([0u8; 32]);
    a.decrypt(&reply).unwrap();
    (a, b)
}

fn setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("session setup");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    let bundle = RemoteBundle::from_bundle(&bob.bundle()).unwrap();
    g.bench_function("sotto-omemo", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut a = alice.create_outbound_session(&bundle, &mut rng);
                let first = a.encrypt(&[0; 32]).unwrap();
                let OmemoKeyMessage::PreKey(p) = &first else {
                    panic!()
                };
                // Consumed-but-not-removed one-time prekeys stay usable, so Bob can be reused.
                let mut inbound = bob.create_inbound_session(p, &mut rng).unwrap();
                let reply = inbound.session.encrypt(&[0; 32]).unwrap();
                (a, inbound, reply)
            },
            BatchSize::SmallInput,
        )
    });
    let olm_alice = OlmAccount::new();
    let olm_bob = std::cell::RefCell::new(OlmAccount::new());
    g.bench_function("vodozemac-olm", |b| {
        b.iter_batched(
            || {
                let mut bob = olm_bob.borrow_mut();
                bob.generate_one_time_keys(1);
                let otk = *bob.one_time_keys().values().next().unwrap();
                bob.mark_keys_as_published();
                otk
            },
            |otk| {
                let mut bob = olm_bob.borrow_mut();
                let mut a = olm_alice.create_outbound_session(
                    SessionConfig::version_1(),
                    bob.curve25519_key(),
                    otk,
                );
                let OlmMessage::PreKey(m) = a.encrypt([0u8; 32]) else {
                    panic!()
                };
                let mut inbound = bob
                    .create_inbound_session(olm_alice.curve25519_key(), &m)
                    .unwrap();
                let reply = inbound.session.encrypt([0u8; 32]);
                (a, inbound, reply)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encrypt(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut g = c.benchmark_group("encrypt 1 KiB");
    let (mut a, _) = sotto_pair(&mut rng);
    g.bench_function("sotto-omemo", |b| {
        b.iter(|| {
            let body = payload::encrypt(&BODY, &mut rng);
            (a.encrypt(body.key_material.as_bytes()).unwrap(), body)
        })
    });
    let (mut oa, _) = olm_pair();
    g.bench_function("vodozemac-olm", |b| b.iter(|| oa.encrypt(BODY)));
    g.finish();

    let mut g = c.benchmark_group("encrypt 1 KiB to 10 devices");
    let mut sessions: Vec<Session> = (0..10).map(|_| sotto_pair(&mut rng).0).collect();
    g.bench_function("sotto-omemo", |b| {
        b.iter(|| {
            let body = payload::encrypt(&BODY, &mut rng);
            let keys: Vec<_> = sessions
                .iter_mut()
                .map(|s| s.encrypt(body.key_material.as_bytes()).unwrap())
                .collect();
            (keys, body)
        })
    });
    let mut olm_sessions: Vec<OlmSession> = (0..10).map(|_| olm_pair().0).collect();
    g.bench_function("vodozemac-olm", |b| {
        b.iter(|| {
            olm_sessions
                .iter_mut()
                .map(|s| s.encrypt(BODY))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

fn decrypt(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut g = c.benchmark_group("decrypt 1 KiB");
    let (mut a, mut b_session) = sotto_pair(&mut rng);
    let mut rng2 = ChaCha20Rng::seed_from_u64(4);
    g.bench_function("sotto-omemo", |b| {
        b.iter_batched(
            || {
                let body = payload::encrypt(&BODY, &mut rng);
                (a.encrypt(body.key_material.as_bytes()).unwrap(), body)
            },
            |(key, body)| {
                let material = b_session.decrypt(&key, &mut rng2).unwrap();
                payload::decrypt(&material, &body.iv, &body.ciphertext).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let (mut oa, mut ob) = olm_pair();
    g.bench_function("vodozemac-olm", |b| {
        b.iter_batched(
            || oa.encrypt(BODY),
            |m| ob.decrypt(&m).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, setup, encrypt, decrypt);
criterion_main!(benches);
