//! X3DH as libsignal 3 does it (`RatchetingSession`).
//!
//! `HKDF-SHA256(ikm = 0xFF × 32 || DH1 || DH2 || DH3 [|| DH4], salt = 32 zero bytes,
//! info = "WhisperText", 64 bytes)` → root key `[0:32]`, chain key `[32:64]`, where for the
//! initiator Alice (identity `IK_A`, base key `EK_A`) and the responder Bob (`IK_B`, `SPK_B`,
//! optional `OPK_B`): DH1 = X(IK_A, SPK_B), DH2 = X(EK_A, IK_B), DH3 = X(EK_A, SPK_B),
//! DH4 = X(EK_A, OPK_B).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{chain_key::ChainKey, root_key::RootKey};
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey};

const INFO: &[u8] = b"WhisperText";

fn derive(dhs: &[Zeroizing<[u8; 32]>]) -> (RootKey, ChainKey) {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (dhs.len() + 1)));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(dh.as_ref());
    }
    let hkdf = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA256's limit; expansion cannot fail.
    let _ = hkdf.expand(INFO, okm.as_mut());
    let mut root = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    let (first, second) = okm.split_at(32);
    root.copy_from_slice(first);
    chain.copy_from_slice(second);
    (RootKey::new(*root), ChainKey::new(*chain, 0))
}

/// The initiator's side.
pub(crate) fn alice(
    our_identity: &IdentityKeyPair,
    our_base_key: &KeyPair,
    their_identity: &IdentityKey,
    their_signed_pre_key: &PublicKey,
    their_one_time_pre_key: Option<&PublicKey>,
) -> (RootKey, ChainKey) {
    let mut dhs = vec![
        our_identity.key_pair().diffie_hellman(their_signed_pre_key),
        our_base_key.diffie_hellman(&their_identity.public_key()),
        our_base_key.diffie_hellman(their_signed_pre_key),
    ];
    if let Some(opk) = their_one_time_pre_key {
        dhs.push(our_base_key.diffie_hellman(opk));
    }
    derive(&dhs)
}

/// The responder's side.
pub(crate) fn bob(
    our_identity: &IdentityKeyPair,
    our_signed_pre_key: &KeyPair,
    our_one_time_pre_key: Option<&KeyPair>,
    their_identity: &IdentityKey,
    their_base_key: &PublicKey,
) -> (RootKey, ChainKey) {
    let mut dhs = vec![
        our_signed_pre_key.diffie_hellman(&their_identity.public_key()),
        our_identity.key_pair().diffie_hellman(their_base_key),
        our_signed_pre_key.diffie_hellman(their_base_key),
    ];
    if let Some(opk) = our_one_time_pre_key {
        dhs.push(opk.diffie_hellman(their_base_key));
    }
    derive(&dhs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// libsignal `RatchetingSessionTest.testRatchetingSessionAsBob` (PROTOCOLS.md §9).
    #[test]
    fn libsignal_ratcheting_session_as_bob() {
        let bob_identity = IdentityKeyPair::from_secret_bytes(hex32(
            "4875cc69ddf8ea0719ec947d61081135868d5fd801f02c0225e516df2156605e",
        ));
        let bob_spk = KeyPair::from_secret_bytes(hex32(
            "583900131fb727998b7803fe6ac22cc591f342e4e42a8c8d5d78194209b8d253",
        ));
        let alice_identity = IdentityKey::from_bytes(
            &hex::decode("05b4a8455660ada65b401007f615e654041746432e3339c6875149bceefcb42b4a")
                .unwrap(),
        )
        .unwrap();
        let alice_base = PublicKey::from_bytes(
            &hex::decode("05472d1fb1a9862c3af6beaca8920277e2b26f4a79213ec7c906aeb35e03cf8950")
                .unwrap(),
        )
        .unwrap();
        let (root, chain) = bob(&bob_identity, &bob_spk, None, &alice_identity, &alice_base);
        assert_eq!(
            hex::encode(chain.key_bytes()),
            "9797caca53c989bbe229a40ca7727010eb2604fc14945d77958a0aeda088b44d"
        );
        assert_eq!(
            hex::encode(root.as_bytes()),
            "3e6130d0a8c8e5b8ad65eb8b7d95fa3ab84710d48d92f34dcda43f9909261bca"
        );
        assert_eq!(chain.index(), 0);
    }

    #[test]
    fn alice_and_bob_agree_with_and_without_one_time_prekey() {
        let ik_a = IdentityKeyPair::from_secret_bytes([1; 32]);
        let ek_a = KeyPair::from_secret_bytes([2; 32]);
        let ik_b = IdentityKeyPair::from_secret_bytes([3; 32]);
        let spk_b = KeyPair::from_secret_bytes([4; 32]);
        let opk_b = KeyPair::from_secret_bytes([5; 32]);
        for opk in [None, Some(&opk_b)] {
            let (ra, ca) = alice(
                &ik_a,
                &ek_a,
                &ik_b.identity_key(),
                &spk_b.public_key(),
                opk.map(|k| k.public_key()).as_ref(),
            );
            let (rb, cb) = bob(&ik_b, &spk_b, opk, &ik_a.identity_key(), &ek_a.public_key());
            assert_eq!(ra.as_bytes(), rb.as_bytes());
            assert_eq!(ca.key_bytes(), cb.key_bytes());
        }
    }
}
