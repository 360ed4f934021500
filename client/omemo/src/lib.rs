//! OMEMO end-to-end encryption for Sotto (XEP-0384, legacy `eu.siacs.conversations.axolotl` first).
//!
//! What this crate does: the cryptographic core of OMEMO — identity fingerprints and the
//! symmetric-key ratchet of the Signal protocol as libsignal defines it, byte for byte, so
//! that Sotto interoperates with Conversations, Dino, Gajim and Converse.js.
//!
//! What it does not do: any I/O. There is no clock, no socket, no storage and no global random
//! number generator here; callers pass time and an `RngCore + CryptoRng` in, and store the
//! (encrypted) state themselves.
//!
//! Status: the chain-key step of the Double Ratchet and fingerprint formatting are implemented
//! and checked against libsignal's test vectors. X3DH, the full ratchet, bundles and the wire
//! formats land with the OMEMO milestone issue.
//!
//! ```
//! use sotto_omemo::fingerprint::Fingerprint;
//! let key = [0x42u8; 32];
//! let fp = Fingerprint::from_curve25519_public(&key);
//! assert_eq!(fp.to_string().split(' ').count(), 8);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod fingerprint;
pub mod session;
