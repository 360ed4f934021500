//! The root chain (libsignal `RootKey`): `KDF_RK`.
//!
//! `HKDF-SHA256(salt = RK, ikm = X25519(our ratchet key, their ratchet key),
//! info = "WhisperRatchet", 64 bytes)` split into the next root key and a new chain key.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::chain_key::ChainKey;
use crate::keys::{KeyPair, PublicKey};

const INFO: &[u8] = b"WhisperRatchet";

/// A root key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey([u8; 32]);

impl RootKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// One DH ratchet step: the next root key and the chain key (at index 0) for the chain
    /// keyed by `their_ratchet` and `our_ratchet`.
    pub(crate) fn create_chain(
        &self,
        their_ratchet: &PublicKey,
        our_ratchet: &KeyPair,
    ) -> (RootKey, ChainKey) {
        let shared = our_ratchet.diffie_hellman(their_ratchet);
        let hkdf = Hkdf::<Sha256>::new(Some(&self.0), shared.as_ref());
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's limit; expansion cannot fail.
        let _ = hkdf.expand(INFO, okm.as_mut());
        let mut root = [0u8; 32];
        let mut chain = [0u8; 32];
        let (first, second) = okm.split_at(32);
        root.copy_from_slice(first);
        chain.copy_from_slice(second);
        let result = (RootKey(root), ChainKey::new(chain, 0));
        root.zeroize();
        chain.zeroize();
        result
    }
}

impl core::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RootKey { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_chain() {
        let a = KeyPair::from_secret_bytes([1; 32]);
        let b = KeyPair::from_secret_bytes([2; 32]);
        let rk = RootKey::new([3; 32]);
        let (ra, ca) = rk.create_chain(&b.public_key(), &a);
        let (rb, cb) = rk.create_chain(&a.public_key(), &b);
        assert_eq!(ra.as_bytes(), rb.as_bytes());
        assert_eq!(ca.key_bytes(), cb.key_bytes());
        assert_ne!(ra.as_bytes(), rk.as_bytes());
        assert_eq!(format!("{ra:?}"), "RootKey { .. }");
    }
}
