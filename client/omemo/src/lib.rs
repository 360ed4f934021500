//! OMEMO end-to-end encryption for Sotto (XEP-0384 v0.3, `eu.siacs.conversations.axolotl`).
//!
//! What this crate does: the cryptographic core of OMEMO as libsignal defines it, byte for
//! byte, so that Sotto interoperates with Conversations, Dino, Gajim and Converse.js:
//! Curve25519 identity keys with libsignal-compatible XEdDSA signatures ([`keys`]), our
//! device's prekeys and bundles ([`account`]), X3DH and the Double Ratchet ([`session`]), the
//! `SignalMessage`/`PreKeySignalMessage` wire formats ([`messages`]), AES-128-GCM payloads and
//! key-transport messages ([`payload`]), and fingerprints ([`fingerprint`]).
//!
//! What it does not do: any I/O or XML. There is no clock, no socket, no storage and no global
//! random number generator here; callers pass time and an `RngCore + CryptoRng` in, and store
//! the state themselves as [`account::AccountPickle`] / [`session::SessionPickle`] (serde),
//! encrypted with their storage key. Trust decisions (BTBV) and PEP are the caller's.
//!
//! Limits (named constants): a message may be at most
//! [`session::receiver_chain::MAX_MESSAGES_AHEAD`] (2000) ahead of its chain; at most
//! [`session::receiver_chain::MAX_SKIPPED_KEYS_PER_CHAIN`] (2000) skipped keys per receiving chain
//! and [`session::double_ratchet::MAX_SKIPPED_KEYS_TOTAL`] per session; at most
//! [`session::double_ratchet::MAX_RECEIVER_CHAINS`] (5) receiving chains. Untrusted input changes
//! state only after it verifies: a receiving chain is installed and a one-time prekey marked used
//! only once the message has decrypted.
//!
//! ```
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! use sotto_omemo::{account::{Account, RemoteBundle}, payload};
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(1); // use a real CSPRNG in production
//! let alice = Account::new(&mut rng);
//! let mut bob = Account::new(&mut rng);
//!
//! // Alice fetched Bob's bundle via PEP and validates it (checks the SPK signature).
//! let bob_bundle = RemoteBundle::from_bundle(&bob.bundle()).unwrap();
//! let mut alice_session = alice.create_outbound_session(&bob_bundle, &mut rng);
//!
//! let body = payload::encrypt(b"Hi Bob", &mut rng);
//! let key = alice_session.encrypt(body.key_material.as_bytes()).unwrap();
//! assert!(key.is_prekey());
//!
//! // Bob receives `<key prekey='true'>`, `<iv>` and `<payload>`.
//! let sotto_omemo::messages::OmemoKeyMessage::PreKey(m) = &key else { unreachable!() };
//! let inbound = bob.create_inbound_session(m, &mut rng).unwrap();
//! let text = payload::decrypt(&inbound.plaintext, &body.iv, &body.ciphertext).unwrap();
//! assert_eq!(text.as_slice(), b"Hi Bob");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![cfg_attr(feature = "insecure-fuzzing-skip-mac", allow(unexpected_cfgs))]

// The MAC-skipping feature exists for cargo-fuzz (which sets `--cfg fuzzing`) and nothing else.
#[cfg(feature = "insecure-fuzzing-skip-mac")]
mod fuzz_guard {
    #[cfg(not(fuzzing))]
    compile_error!("`insecure-fuzzing-skip-mac` disables MAC checks; cargo-fuzz builds only");
}

pub mod account;
pub mod fingerprint;
pub mod keys;
pub mod messages;
pub mod payload;
pub mod session;
