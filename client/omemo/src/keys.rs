//! Curve25519 keys as libsignal uses them: X25519 key pairs, the 33-byte `0x05 || u` public-key
//! encoding, and XEdDSA signatures with libsignal's sign-bit convention.
//!
//! libsignal signs with the Curve25519 identity key by converting it to an Ed25519 key. The sign
//! bit of the Ed25519 public key cannot be recovered from the Montgomery `u` coordinate, so
//! libsignal stores it in the otherwise unused top bit of the signature (`sig[63] & 0x80`).
//! Verification recovers `y = (u − 1)/(u + 1)`, takes the sign bit from the signature, clears
//! it and runs a plain Ed25519 verification. We sign the same way, so our signatures verify in
//! libsignal, python-xeddsa and in the pure XEdDSA scheme alike.

use core::fmt;

use curve25519_dalek::{edwards::EdwardsPoint, montgomery::MontgomeryPoint, scalar::Scalar};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::fingerprint::Fingerprint;

/// The type byte libsignal puts in front of every serialised Curve25519 public key.
pub const DJB_TYPE: u8 = 0x05;

/// The length of a serialised public key (`0x05 || u`).
pub const PUBLIC_KEY_LENGTH: usize = 33;

/// The length of an XEdDSA signature.
pub const SIGNATURE_LENGTH: usize = 64;

/// A public key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is not 33 bytes long.
    #[error("a public key must be 33 bytes (0x05 || key), got {0}")]
    InvalidLength(usize),
    /// The top bit of the `u` coordinate is set. X25519 ignores that bit, so accepting it
    /// would make keys malleable; no honest implementation sets it.
    #[error("the public key has its top bit set")]
    NonCanonical,
    /// The first byte is not libsignal's Curve25519 type byte `0x05`.
    #[error("unknown public key type byte {0:#04x}")]
    UnknownType(u8),
}

/// A signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature is not 64 bytes long.
    #[error("a signature must be 64 bytes, got {0}")]
    InvalidLength(usize),
    /// The signature does not match the key and message.
    #[error("the signature does not verify")]
    Invalid,
}

/// A Curve25519 public key (the Montgomery `u` coordinate).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// A key from its raw 32 bytes, without the type byte.
    pub fn from_raw(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Decode libsignal's serialised form `0x05 || u` (33 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes {
            [DJB_TYPE, rest @ ..] => {
                let raw =
                    <[u8; 32]>::try_from(rest).map_err(|_| KeyError::InvalidLength(bytes.len()))?;
                if raw[31] & 0x80 != 0 {
                    return Err(KeyError::NonCanonical);
                }
                Ok(Self(raw))
            }
            [other, ..] if bytes.len() == PUBLIC_KEY_LENGTH => Err(KeyError::UnknownType(*other)),
            _ => Err(KeyError::InvalidLength(bytes.len())),
        }
    }

    /// libsignal's serialised form `0x05 || u`.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LENGTH] {
        let mut out = [0u8; PUBLIC_KEY_LENGTH];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The raw 32 bytes, without the type byte.
    pub fn as_raw(&self) -> &[u8; 32] {
        &self.0
    }

    fn x25519(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({})",
            Fingerprint::from_curve25519_public(&self.0)
        )
    }
}

/// An X25519 key pair. The secret half is zeroized on drop and never printed.
#[derive(Clone, ZeroizeOnDrop)]
pub struct KeyPair {
    secret: StaticSecret,
    #[zeroize(skip)]
    public: PublicKey,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret_bytes(*bytes)
    }

    /// The key pair for a given private key (clamped as X25519 does).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// X25519 with a peer's public key.
    pub(crate) fn diffie_hellman(&self, theirs: &PublicKey) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.diffie_hellman(&theirs.x25519()).to_bytes())
    }

    /// The private key bytes, for pickling only.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// XEdDSA signature (libsignal convention: the Ed25519 public key's sign bit in `sig[63]`).
    fn sign(&self, message: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> [u8; SIGNATURE_LENGTH] {
        // The Edwards form of the clamped private scalar; the clamped integer is below 2^255 and
        // the base point has order ℓ, so reducing it mod ℓ yields the same public point.
        let clamped = Zeroizing::new(curve25519_dalek::scalar::clamp_integer(
            self.secret.to_bytes(),
        ));
        let a = Zeroizing::new(Scalar::from_bytes_mod_order(*clamped));
        let ed_public = EdwardsPoint::mul_base(&a).compress();
        let sign_bit = ed_public.as_bytes()[31] & 0x80;

        // r = hash1(a || M || Z) with hash1's prefix 0xFE || 0xFF × 31 (XEdDSA §2.5, libsignal).
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(random.as_mut());
        let mut prefix = [0xFFu8; 32];
        prefix[0] = 0xFE;
        let mut nonce_hash = Sha512::new();
        nonce_hash.update(prefix);
        nonce_hash.update(clamped.as_ref());
        nonce_hash.update(message);
        nonce_hash.update(random.as_ref());
        let r = Zeroizing::new(Scalar::from_hash(nonce_hash));
        let big_r = EdwardsPoint::mul_base(&r).compress();

        let mut h_hash = Sha512::new();
        h_hash.update(big_r.as_bytes());
        h_hash.update(ed_public.as_bytes());
        h_hash.update(message);
        let h = Scalar::from_hash(h_hash);
        let s = h * *a + *r;

        let mut signature = [0u8; SIGNATURE_LENGTH];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice(s.as_bytes());
        // s < ℓ < 2^253, so the top bit is free for the sign bit.
        signature[63] = (signature[63] & 0x7F) | sign_bit;
        signature
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A device's long-term identity public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IdentityKey(PublicKey);

impl IdentityKey {
    /// Wrap a Curve25519 public key.
    pub fn new(key: PublicKey) -> Self {
        Self(key)
    }

    /// Decode `0x05 || u`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        PublicKey::from_bytes(bytes).map(Self)
    }

    /// `0x05 || u`, as in bundles and messages.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LENGTH] {
        self.0.to_bytes()
    }

    /// The Curve25519 public key.
    pub fn public_key(&self) -> PublicKey {
        self.0
    }

    /// The fingerprint other OMEMO clients show for this key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_curve25519_public(self.0.as_raw())
    }

    /// Verify an XEdDSA signature made with this identity key, libsignal style: the Ed25519
    /// sign bit comes from `signature[63] & 0x80`, which is cleared before Ed25519 verification.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let mut sig: [u8; SIGNATURE_LENGTH] = signature
            .try_into()
            .map_err(|_| SignatureError::InvalidLength(signature.len()))?;
        let sign_bit = (sig[63] & 0x80) >> 7;
        sig[63] &= 0x7F;
        // y = (u − 1)/(u + 1); `None` only for u = −1, which has no Edwards counterpart.
        let edwards = MontgomeryPoint(*self.0.as_raw())
            .to_edwards(sign_bit)
            .ok_or(SignatureError::Invalid)?;
        // `to_edwards` has decompressed the point already; `From` only compresses it for the
        // hash (what `from_bytes` would decompress again to the same point).
        let verifying_key = ed25519_dalek::VerifyingKey::from(edwards);
        let signature = ed25519_dalek::Signature::from_bytes(&sig);
        // Plain RFC 8032 verification (what libsignal accepts), not `verify_strict`.
        ed25519_dalek::Verifier::verify(&verifying_key, message, &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Our identity key pair.
#[derive(Clone, ZeroizeOnDrop)]
pub struct IdentityKeyPair(KeyPair);

impl IdentityKeyPair {
    /// A fresh identity.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self(KeyPair::generate(rng))
    }

    /// The identity for a given private key.
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        Self(KeyPair::from_secret_bytes(bytes))
    }

    /// The public identity key.
    pub fn identity_key(&self) -> IdentityKey {
        IdentityKey(self.0.public_key())
    }

    /// Sign `message` with XEdDSA (libsignal's convention, see the module docs).
    pub fn sign(
        &self,
        message: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> [u8; SIGNATURE_LENGTH] {
        self.0.sign(message, rng)
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.0
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.0.public)
            .finish_non_exhaustive()
    }
}

/// A signed prekey: an X25519 key pair with an id and our identity's signature over the
/// serialised public key (`0x05 || u`).
#[derive(Clone, ZeroizeOnDrop)]
pub struct SignedPreKey {
    #[zeroize(skip)]
    id: u32,
    key_pair: KeyPair,
    #[zeroize(skip)]
    signature: [u8; SIGNATURE_LENGTH],
}

impl SignedPreKey {
    /// Generate and sign a new signed prekey.
    pub fn generate(
        id: u32,
        identity: &IdentityKeyPair,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signature = identity.sign(&key_pair.public_key().to_bytes(), rng);
        Self {
            id,
            key_pair,
            signature,
        }
    }

    pub(crate) fn from_parts(
        id: u32,
        key_pair: KeyPair,
        signature: [u8; SIGNATURE_LENGTH],
    ) -> Self {
        Self {
            id,
            key_pair,
            signature,
        }
    }

    /// The id published in the bundle.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public_key()
    }

    /// The signature over `0x05 || public key`.
    pub fn signature(&self) -> &[u8; SIGNATURE_LENGTH] {
        &self.signature
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }
}

impl fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKey")
            .field("id", &self.id)
            .field("public", &self.key_pair.public)
            .finish_non_exhaustive()
    }
}

/// A one-time prekey: an X25519 key pair with an id.
#[derive(Clone, ZeroizeOnDrop)]
pub struct OneTimePreKey {
    #[zeroize(skip)]
    id: u32,
    key_pair: KeyPair,
}

impl OneTimePreKey {
    /// Generate a one-time prekey with the given id.
    pub fn generate(id: u32, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self {
            id,
            key_pair: KeyPair::generate(rng),
        }
    }

    pub(crate) fn from_parts(id: u32, key_pair: KeyPair) -> Self {
        Self { id, key_pair }
    }

    /// The id published in the bundle.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public_key()
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }
}

impl fmt::Debug for OneTimePreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePreKey")
            .field("id", &self.id)
            .field("public", &self.key_pair.public)
            .finish_non_exhaustive()
    }
}

impl Zeroize for KeyPair {
    fn zeroize(&mut self) {
        self.secret.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// libsignal `Curve25519Test.testSignature` (PROTOCOLS.md §9).
    #[test]
    fn libsignal_signature_vector_verifies_only_with_sign_bit_rule() {
        let ik = IdentityKey::from_bytes(
            &hex::decode("05ab7e717d4a163b7d9a1d8071dfe9dcf8cdcd1cea3339b6356be84d887e322c64")
                .unwrap(),
        )
        .unwrap();
        let message =
            hex::decode("05edce9d9c415ca78cb7252e72c2c4a554d3eb29485a0e1d503118d1a82d99fb4a")
                .unwrap();
        let mut sig = hex::decode(
            "5de88ca9a89b4a115da79109c67c9c7464a3e4180274f1cb8c63c2984e286dfb\
             ede82deb9dcd9fae0bfbb821569b3d9001bd8130cd11d486cef047bd60b86e88",
        )
        .unwrap();
        assert_eq!(sig[63] & 0x80, 0x80, "the vector carries sign bit 1");
        ik.verify(&message, &sig).unwrap();

        // Pure XEdDSA verification (sign bit forced to 0) must fail on this vector.
        sig[63] &= 0x7F;
        assert_eq!(ik.verify(&message, &sig), Err(SignatureError::Invalid));

        // Any flipped message bit fails.
        sig[63] |= 0x80;
        let mut tampered = message.clone();
        tampered[5] ^= 1;
        assert_eq!(ik.verify(&tampered, &sig), Err(SignatureError::Invalid));
        assert_eq!(
            ik.verify(&message, &sig[..63]),
            Err(SignatureError::InvalidLength(63))
        );
    }

    #[test]
    fn sign_verify_round_trip_with_both_sign_bits() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut seen = [false; 2];
        for _ in 0..32 {
            let identity = IdentityKeyPair::generate(&mut rng);
            let message = b"0x05 || signed prekey";
            let sig = identity.sign(message, &mut rng);
            seen[usize::from(sig[63] >> 7)] = true;
            identity.identity_key().verify(message, &sig).unwrap();
            let mut bad = sig;
            bad[10] ^= 0x40;
            assert!(identity.identity_key().verify(message, &bad).is_err());
            let other = IdentityKeyPair::generate(&mut rng);
            assert!(other.identity_key().verify(message, &sig).is_err());
        }
        assert_eq!(
            seen,
            [true, true],
            "both Ed25519 sign bits occur and verify"
        );
    }

    #[test]
    fn public_key_encoding() {
        let key = PublicKey::from_raw([9; 32]);
        let bytes = key.to_bytes();
        assert_eq!(bytes[0], 0x05);
        assert_eq!(PublicKey::from_bytes(&bytes), Ok(key));
        assert_eq!(
            PublicKey::from_bytes(&bytes[1..]),
            Err(KeyError::InvalidLength(32))
        );
        let mut wrong = bytes;
        wrong[0] = 0x06;
        assert_eq!(PublicKey::from_bytes(&wrong), Err(KeyError::UnknownType(6)));
        assert_eq!(PublicKey::from_bytes(&[]), Err(KeyError::InvalidLength(0)));
        let mut high = bytes;
        high[32] |= 0x80;
        assert_eq!(PublicKey::from_bytes(&high), Err(KeyError::NonCanonical));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let secret = [0x5au8; 32];
        let pair = IdentityKeyPair::from_secret_bytes(secret);
        let text = format!("{pair:?} {:?}", pair.key_pair());
        assert!(!text.contains("5a5a"), "{text}");
        assert!(!text.contains("90, 90"), "{text}");
        assert!(
            text.starts_with("IdentityKeyPair { public: PublicKey("),
            "{text}"
        );
        let spk = SignedPreKey::generate(3, &pair, &mut ChaCha20Rng::seed_from_u64(1));
        assert!(format!("{spk:?}").contains("id: 3"));
    }
}
