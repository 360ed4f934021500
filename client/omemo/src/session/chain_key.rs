//! The symmetric-key ratchet step (libsignal `ChainKey`, protocol version 3).
//!
//! `KDF_CK`: the message-key seed is `HMAC-SHA256(CK, 0x01)` and the next chain key is
//! `HMAC-SHA256(CK, 0x02)`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::message_key::MessageKeys;

type HmacSha256 = Hmac<Sha256>;

const MESSAGE_KEY_SEED: [u8; 1] = [0x01];
const CHAIN_KEY_SEED: [u8; 1] = [0x02];

/// A sending or receiving chain key together with its index in the chain.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ChainKey {
    key: [u8; 32],
    index: u32,
}

impl ChainKey {
    /// A chain key as produced by the root chain, at the given index.
    pub fn new(key: [u8; 32], index: u32) -> Self {
        Self { key, index }
    }

    /// The position of this key in its chain (the counter of the next message).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The raw chain key, for pickling and tests.
    pub(crate) fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The message keys for the message at [`ChainKey::index`].
    pub fn message_keys(&self) -> MessageKeys {
        let mut seed = self.hmac(&MESSAGE_KEY_SEED);
        let keys = MessageKeys::derive(&seed, self.index);
        seed.zeroize();
        keys
    }

    /// The chain key for the next message. Returns `None` when the index would overflow,
    /// which a peer cannot force within the skipped-key limits but we refuse to wrap anyway.
    pub fn next(&self) -> Option<ChainKey> {
        let index = self.index.checked_add(1)?;
        Some(ChainKey {
            key: self.hmac(&CHAIN_KEY_SEED),
            index,
        })
    }

    fn hmac(&self, input: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.key, &[input])
    }
}

impl core::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChainKey")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this constructor cannot fail for a 32-byte key.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac_key_length(),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac_key_length() -> ! {
    // `Hmac::new_from_slice` only fails for MACs with fixed key sizes; HMAC has none.
    #[allow(clippy::panic)]
    {
        panic!("HMAC rejected a key length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// libsignal `ChainKeyTest.testChainKeyDerivationV3`.
    #[test]
    fn libsignal_chain_key_vector() {
        let ck = ChainKey::new(
            hex32("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f"),
            0,
        );
        let keys = ck.message_keys();
        assert_eq!(
            hex::encode(keys.cipher_key()),
            "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
        );
        assert_eq!(
            hex::encode(keys.mac_key()),
            "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
        );
        assert_eq!(keys.counter(), 0);
        let next = ck.next().unwrap();
        assert_eq!(
            hex::encode(next.key),
            "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"
        );
        assert_eq!(next.index(), 1);
        assert_eq!(next.next().unwrap().message_keys().counter(), 2);
    }

    #[test]
    fn index_never_wraps() {
        assert!(ChainKey::new([0; 32], u32::MAX).next().is_none());
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!("{:?}", ChainKey::new([0xab; 32], 3));
        assert!(!text.contains("ab, ") && !text.contains("171"), "{text}");
        assert!(text.contains("index: 3"));
    }
}
