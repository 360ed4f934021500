//! OMEMO 0.3 payload encryption (XEP-0384 v0.3 §4.5 as Conversations implements it).
//!
//! The message body is encrypted with AES-128-GCM under a random 16-byte key and a random
//! 12-byte IV, without associated data. `<payload>` carries the ciphertext *without* the
//! 16-byte tag; the tag travels with the key: the ratchet encrypts `key(16) || tag(16)` to each
//! recipient device. On decryption we also accept 16-byte IVs (old senders) and 16-byte key
//! material with the tag appended to the payload (very old Conversations).
//!
//! A key-transport ("empty") message has no `<payload>`; its ratchet plaintext is 16 random
//! bytes ([`KeyTransport`]).

use aes_gcm::{
    aead::{consts::U16, AeadInPlace, KeyInit},
    aes::Aes128,
    AesGcm, Nonce, Tag,
};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The length of the payload key.
pub const PAYLOAD_KEY_LENGTH: usize = 16;
/// The length of the GCM tag.
pub const TAG_LENGTH: usize = 16;
/// The IV length we send.
pub const IV_LENGTH: usize = 12;

type Aes128Gcm12 = AesGcm<Aes128, aes_gcm::aead::consts::U12>;
type Aes128Gcm16 = AesGcm<Aes128, U16>;

/// A payload did not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The key material from the ratchet is neither 16 nor at least 32 bytes.
    #[error("key material of {0} bytes is not 16 or 32")]
    InvalidKeyMaterial(usize),
    /// The IV is neither 12 nor 16 bytes.
    #[error("an IV of {0} bytes is not 12 or 16")]
    InvalidIv(usize),
    /// The payload is shorter than the tag it should carry (16-byte key material only).
    #[error("the payload is too short")]
    TooShort,
    /// Authentication failed: wrong key, or the payload was altered.
    #[error("the payload does not authenticate")]
    Authentication,
}

/// The secret that the ratchet carries to every recipient device: `key(16) || tag(16)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; PAYLOAD_KEY_LENGTH + TAG_LENGTH]);

impl KeyMaterial {
    /// The 32 bytes to pass to [`crate::session::Session::encrypt`].
    pub fn as_bytes(&self) -> &[u8; PAYLOAD_KEY_LENGTH + TAG_LENGTH] {
        &self.0
    }
}

impl core::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyMaterial { .. }")
    }
}

/// An encrypted body: what goes into `<iv>` and `<payload>`, plus the key material for the
/// ratchet.
#[derive(Debug)]
pub struct EncryptedPayload {
    /// The key material to encrypt to each recipient device.
    pub key_material: KeyMaterial,
    /// `<iv>` (12 bytes).
    pub iv: [u8; IV_LENGTH],
    /// `<payload>`: the GCM ciphertext without the tag.
    pub ciphertext: Vec<u8>,
}

/// Encrypt a message body.
pub fn encrypt(plaintext: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> EncryptedPayload {
    let mut key = Zeroizing::new([0u8; PAYLOAD_KEY_LENGTH]);
    rng.fill_bytes(key.as_mut());
    let mut iv = [0u8; IV_LENGTH];
    rng.fill_bytes(&mut iv);
    let cipher = Aes128Gcm12::new(key.as_ref().into());
    let mut ciphertext = plaintext.to_vec();
    // Encryption fails only for plaintexts beyond GCM's 64 GiB limit, which no stanza reaches;
    // the buffer then stays as it was, so fall back to an empty body rather than panic.
    let tag = match cipher.encrypt_in_place_detached(Nonce::from_slice(&iv), b"", &mut ciphertext) {
        Ok(tag) => tag,
        Err(_) => {
            ciphertext.clear();
            Tag::default()
        }
    };
    let mut material = [0u8; PAYLOAD_KEY_LENGTH + TAG_LENGTH];
    material[..PAYLOAD_KEY_LENGTH].copy_from_slice(key.as_ref());
    material[PAYLOAD_KEY_LENGTH..].copy_from_slice(&tag);
    EncryptedPayload {
        key_material: KeyMaterial(material),
        iv,
        ciphertext,
    }
}

/// Decrypt `<payload>` with the ratchet plaintext (`key_material`) and `<iv>`.
pub fn decrypt(
    key_material: &[u8],
    iv: &[u8],
    payload: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
    let (key, tag, body) = match key_material.len() {
        n if n >= PAYLOAD_KEY_LENGTH + TAG_LENGTH => {
            let (key, rest) = key_material.split_at(PAYLOAD_KEY_LENGTH);
            let tag = rest
                .get(..TAG_LENGTH)
                .ok_or(PayloadError::InvalidKeyMaterial(n))?;
            (key, tag, payload)
        }
        PAYLOAD_KEY_LENGTH => {
            let split = payload
                .len()
                .checked_sub(TAG_LENGTH)
                .ok_or(PayloadError::TooShort)?;
            let (body, tag) = payload.split_at(split);
            (key_material, tag, body)
        }
        n => return Err(PayloadError::InvalidKeyMaterial(n)),
    };
    let mut buffer = Zeroizing::new(body.to_vec());
    let result = match iv.len() {
        12 => Aes128Gcm12::new(key.into()).decrypt_in_place_detached(
            Nonce::from_slice(iv),
            b"",
            &mut buffer,
            Tag::from_slice(tag),
        ),
        16 => Aes128Gcm16::new(key.into()).decrypt_in_place_detached(
            aes_gcm::aead::generic_array::GenericArray::from_slice(iv),
            b"",
            &mut buffer,
            Tag::from_slice(tag),
        ),
        n => return Err(PayloadError::InvalidIv(n)),
    };
    result.map_err(|_| PayloadError::Authentication)?;
    Ok(buffer)
}

/// The ratchet plaintext of a key-transport (empty, heartbeat) message: 16 random bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyTransport([u8; PAYLOAD_KEY_LENGTH]);

impl KeyTransport {
    /// Fresh random key-transport material.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; PAYLOAD_KEY_LENGTH];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The 16 bytes to pass to [`crate::session::Session::encrypt`].
    pub fn as_bytes(&self) -> &[u8; PAYLOAD_KEY_LENGTH] {
        &self.0
    }
}

impl core::fmt::Debug for KeyTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyTransport { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};

    #[test]
    fn round_trip_and_layout() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let enc = encrypt(b"Hello, OMEMO", &mut rng);
        assert_eq!(enc.ciphertext.len(), 12, "payload excludes the tag");
        assert_eq!(enc.key_material.as_bytes().len(), 32);
        let pt = decrypt(enc.key_material.as_bytes(), &enc.iv, &enc.ciphertext).unwrap();
        assert_eq!(pt.as_slice(), b"Hello, OMEMO");

        // Tampering with payload, tag or IV fails authentication.
        let mut bad = enc.ciphertext.clone();
        bad[0] ^= 1;
        assert_eq!(
            decrypt(enc.key_material.as_bytes(), &enc.iv, &bad),
            Err(PayloadError::Authentication)
        );
        let mut km = *enc.key_material.as_bytes();
        km[31] ^= 1;
        assert_eq!(
            decrypt(&km, &enc.iv, &enc.ciphertext),
            Err(PayloadError::Authentication)
        );
        assert_eq!(
            decrypt(enc.key_material.as_bytes(), &[0; 8], &enc.ciphertext),
            Err(PayloadError::InvalidIv(8))
        );
        assert_eq!(
            decrypt(&km[..20], &enc.iv, &enc.ciphertext),
            Err(PayloadError::InvalidKeyMaterial(20))
        );
        assert_eq!(format!("{:?}", enc.key_material), "KeyMaterial { .. }");
    }

    #[test]
    fn legacy_forms_are_accepted() {
        // 16-byte key material with the tag appended to the payload.
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let enc = encrypt(b"legacy", &mut rng);
        let (key, tag) = enc.key_material.as_bytes().split_at(16);
        let mut payload = enc.ciphertext.clone();
        payload.extend_from_slice(tag);
        assert_eq!(
            decrypt(key, &enc.iv, &payload).unwrap().as_slice(),
            b"legacy"
        );
        assert_eq!(decrypt(key, &enc.iv, &[0; 3]), Err(PayloadError::TooShort));

        // A 16-byte IV (old Conversations, Wycheproof's long-IV cases).
        let iv16 = [7u8; 16];
        let cipher = Aes128Gcm16::new(key.into());
        let mut body = b"sixteen-byte iv".to_vec();
        let tag = cipher
            .encrypt_in_place_detached(
                aes_gcm::aead::generic_array::GenericArray::from_slice(&iv16),
                b"",
                &mut body,
            )
            .unwrap();
        let mut km = key.to_vec();
        km.extend_from_slice(&tag);
        assert_eq!(
            decrypt(&km, &iv16, &body).unwrap().as_slice(),
            b"sixteen-byte iv"
        );
    }

    #[test]
    fn key_transport_is_sixteen_random_bytes() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let a = KeyTransport::generate(&mut rng);
        let b = KeyTransport::generate(&mut rng);
        assert_eq!(a.as_bytes().len(), 16);
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(format!("{a:?}"), "KeyTransport { .. }");
    }
}
