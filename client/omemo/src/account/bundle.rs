//! Bundles: the public half of a device's prekeys, published via PEP
//! (`eu.siacs.conversations.axolotl.bundles:<device id>`).
//!
//! [`Bundle`] is ours, ready to publish. [`RemoteBundle`] is a contact's, parsed from
//! untrusted bytes and only constructed once its signed-prekey signature verifies.

use crate::keys::{IdentityKey, KeyError, PublicKey, SignatureError, SIGNATURE_LENGTH};

/// A contact's bundle keeps at most this many one-time prekeys (XEP-0384 asks for ~100).
pub const MAX_REMOTE_PRE_KEYS: usize = 1000;

/// A remote bundle was rejected. The peer published something malformed or forged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The identity key is not a valid `0x05 || u` key.
    #[error("invalid identity key: {0}")]
    InvalidIdentityKey(KeyError),
    /// The signed prekey is not a valid `0x05 || u` key.
    #[error("invalid signed prekey: {0}")]
    InvalidSignedPreKey(KeyError),
    /// The signed prekey's signature does not verify under the identity key.
    #[error("invalid signed prekey signature: {0}")]
    InvalidSignature(SignatureError),
}

/// Our bundle, to publish. Every key is serialised as `0x05 || u` on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub(crate) identity_key: IdentityKey,
    pub(crate) signed_pre_key_id: u32,
    pub(crate) signed_pre_key: PublicKey,
    pub(crate) signed_pre_key_signature: [u8; SIGNATURE_LENGTH],
    pub(crate) pre_keys: Vec<(u32, PublicKey)>,
}

impl Bundle {
    /// `<identityKey>`.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// `<signedPreKeyPublic signedPreKeyId='…'>`'s id.
    pub fn signed_pre_key_id(&self) -> u32 {
        self.signed_pre_key_id
    }

    /// `<signedPreKeyPublic>`.
    pub fn signed_pre_key(&self) -> PublicKey {
        self.signed_pre_key
    }

    /// `<signedPreKeySignature>`.
    pub fn signed_pre_key_signature(&self) -> &[u8; SIGNATURE_LENGTH] {
        &self.signed_pre_key_signature
    }

    /// `<prekeys><preKeyPublic preKeyId='…'>`: the unused one-time prekeys.
    pub fn pre_keys(&self) -> &[(u32, PublicKey)] {
        &self.pre_keys
    }
}

/// A contact's bundle whose signed-prekey signature has been verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteBundle {
    identity_key: IdentityKey,
    signed_pre_key_id: u32,
    signed_pre_key: PublicKey,
    pre_keys: Vec<(u32, PublicKey)>,
    malformed_pre_keys: usize,
}

impl RemoteBundle {
    /// Parse and validate the decoded (base64-free) contents of a bundle element.
    ///
    /// The identity key, signed prekey and signature must be valid. Malformed one-time prekeys
    /// are skipped and counted (as Conversations does), and at most [`MAX_REMOTE_PRE_KEYS`]
    /// are kept; a bundle without one-time prekeys still allows X3DH without DH4.
    pub fn new<K: AsRef<[u8]>>(
        identity_key: &[u8],
        signed_pre_key_id: u32,
        signed_pre_key: &[u8],
        signed_pre_key_signature: &[u8],
        pre_keys: impl IntoIterator<Item = (u32, K)>,
    ) -> Result<Self, BundleError> {
        let identity_key =
            IdentityKey::from_bytes(identity_key).map_err(BundleError::InvalidIdentityKey)?;
        let spk =
            PublicKey::from_bytes(signed_pre_key).map_err(BundleError::InvalidSignedPreKey)?;
        identity_key
            .verify(&spk.to_bytes(), signed_pre_key_signature)
            .map_err(BundleError::InvalidSignature)?;
        let mut parsed = Vec::new();
        let mut malformed = 0;
        for (id, key) in pre_keys {
            if parsed.len() >= MAX_REMOTE_PRE_KEYS {
                break;
            }
            match PublicKey::from_bytes(key.as_ref()) {
                Ok(key) => parsed.push((id, key)),
                Err(_) => malformed += 1,
            }
        }
        Ok(Self {
            identity_key,
            signed_pre_key_id,
            signed_pre_key: spk,
            pre_keys: parsed,
            malformed_pre_keys: malformed,
        })
    }

    /// Validate one of our own [`Bundle`]s as a peer would (mainly for tests and loopback).
    pub fn from_bundle(bundle: &Bundle) -> Result<Self, BundleError> {
        Self::new(
            &bundle.identity_key.to_bytes(),
            bundle.signed_pre_key_id,
            &bundle.signed_pre_key.to_bytes(),
            &bundle.signed_pre_key_signature,
            bundle.pre_keys.iter().map(|(id, k)| (*id, k.to_bytes())),
        )
    }

    /// The contact device's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// The signed prekey's id.
    pub fn signed_pre_key_id(&self) -> u32 {
        self.signed_pre_key_id
    }

    /// The signed prekey.
    pub fn signed_pre_key(&self) -> PublicKey {
        self.signed_pre_key
    }

    /// The well-formed one-time prekeys.
    pub fn pre_keys(&self) -> &[(u32, PublicKey)] {
        &self.pre_keys
    }

    /// How many one-time prekeys were skipped as malformed.
    pub fn malformed_pre_keys(&self) -> usize {
        self.malformed_pre_keys
    }
}
