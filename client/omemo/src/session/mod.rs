//! The Double Ratchet session, one module per concept (after vodozemac's `olm::session`).
//!
//! A [`Session`] is created by [`crate::account::Account::create_outbound_session`] (we start
//! it, from the peer's bundle) or [`crate::account::Account::create_inbound_session`] (the peer
//! started it with a `PreKeySignalMessage`). Until the initiator has decrypted a message from
//! the responder, [`Session::encrypt`] produces `PreKeySignalMessage`s, as libsignal does.

pub mod chain_key;
pub mod double_ratchet;
pub mod message_key;
pub mod receiver_chain;
pub(crate) mod root_key;
pub(crate) mod x3dh;

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use self::{
    chain_key::ChainKey,
    double_ratchet::{DoubleRatchet, SenderChain, MAX_RECEIVER_CHAINS},
    message_key::MessageKeys,
    receiver_chain::{ReceiverChain, MAX_SKIPPED_KEYS_PER_CHAIN},
    root_key::RootKey,
};
use crate::{
    keys::{IdentityKey, IdentityKeyPair, KeyPair, OneTimePreKey, PublicKey, SignedPreKey},
    messages::{OmemoKeyMessage, PreKeySignalMessage},
};

/// The version written into new [`SessionPickle`]s.
pub const SESSION_PICKLE_VERSION: u32 = 1;

/// Encryption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// The sending chain reached 2^32 messages; start a new session.
    #[error("the sending chain is exhausted")]
    ChainExhausted,
}

/// A ratchet message did not decrypt. The session state is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptionError {
    /// We already decrypted this message (or dropped its key). Callers may ignore it silently.
    #[error("message {counter} was already received")]
    Duplicate {
        /// The message's counter.
        counter: u32,
    },
    /// The message claims a position too far ahead of its chain.
    #[error("message {counter} is too far ahead of the chain (at {current})")]
    TooFarAhead {
        /// The message's counter.
        counter: u32,
        /// The next counter we expected on that chain.
        current: u32,
    },
    /// The MAC does not verify: forged, corrupted, or not for this session.
    #[error("the message MAC does not verify")]
    InvalidMac,
    /// The MAC verified but the ciphertext does not decrypt (bad length or padding).
    #[error("the ciphertext is malformed")]
    InvalidCiphertext,
    /// A `PreKeySignalMessage` that belongs to another session (other base key or identity);
    /// pass it to [`crate::account::Account::create_inbound_session`].
    #[error("the prekey message does not belong to this session")]
    SessionMismatch,
    /// A chain counter would overflow.
    #[error("the receiving chain is exhausted")]
    ChainExhausted,
}

/// A pickle could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The pickle was written by a version of this crate we cannot read.
    #[error("unsupported pickle version {0}")]
    UnsupportedVersion(u32),
    /// The pickle is internally inconsistent.
    #[error("the pickle is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// What the initiator repeats in every message until the responder answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingPreKey {
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: PublicKey,
}

/// An OMEMO session with one remote device.
pub struct Session {
    local_identity: IdentityKey,
    remote_identity: IdentityKey,
    ratchet: DoubleRatchet,
    /// Initiator only: present until we decrypt something from the responder.
    pending_pre_key: Option<PendingPreKey>,
    /// Responder only: the initiator's base key, to recognise its repeated prekey messages.
    their_base_key: Option<PublicKey>,
}

impl Session {
    /// X3DH as initiator. The bundle's signature must already have been verified.
    pub(crate) fn new_outbound(
        our_identity: &IdentityKeyPair,
        their_identity: IdentityKey,
        signed_pre_key: (u32, PublicKey),
        one_time_pre_key: Option<(u32, PublicKey)>,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let base_key = KeyPair::generate(rng);
        let (root, chain) = x3dh::alice(
            our_identity,
            &base_key,
            &their_identity,
            &signed_pre_key.1,
            one_time_pre_key.as_ref().map(|(_, k)| k),
        );
        Self {
            local_identity: our_identity.identity_key(),
            remote_identity: their_identity,
            ratchet: DoubleRatchet::alice(root, chain, signed_pre_key.1, rng),
            pending_pre_key: Some(PendingPreKey {
                pre_key_id: one_time_pre_key.map(|(id, _)| id),
                signed_pre_key_id: signed_pre_key.0,
                base_key: base_key.public_key(),
            }),
            their_base_key: None,
        }
    }

    /// X3DH as responder; the caller decrypts the embedded message before keeping the session.
    pub(crate) fn new_inbound(
        our_identity: &IdentityKeyPair,
        signed_pre_key: &SignedPreKey,
        one_time_pre_key: Option<&OneTimePreKey>,
        message: &PreKeySignalMessage,
    ) -> Self {
        let (root, chain) = x3dh::bob(
            our_identity,
            signed_pre_key.key_pair(),
            one_time_pre_key.map(OneTimePreKey::key_pair),
            &message.identity_key(),
            &message.base_key(),
        );
        Self {
            local_identity: our_identity.identity_key(),
            remote_identity: message.identity_key(),
            ratchet: DoubleRatchet::bob(root, chain, signed_pre_key.key_pair().clone()),
            pending_pre_key: None,
            their_base_key: Some(message.base_key()),
        }
    }

    /// Our identity key.
    pub fn local_identity(&self) -> IdentityKey {
        self.local_identity
    }

    /// The remote device's identity key (what trust decisions are about).
    pub fn remote_identity(&self) -> IdentityKey {
        self.remote_identity
    }

    /// Whether the peer has answered, i.e. we no longer send `PreKeySignalMessage`s.
    pub fn is_acknowledged(&self) -> bool {
        self.pending_pre_key.is_none()
    }

    /// The X3DH base key identifying this session (the initiator's ephemeral key).
    pub fn base_key(&self) -> Option<PublicKey> {
        self.pending_pre_key
            .map(|p| p.base_key)
            .or(self.their_base_key)
    }

    /// The number of skipped message keys currently stored.
    pub fn skipped_message_keys(&self) -> usize {
        self.ratchet.skipped_keys()
    }

    /// Encrypt one ratchet plaintext (in OMEMO: the payload key material, 32 bytes, or 16 random
    /// bytes for a key-transport message).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<OmemoKeyMessage, EncryptionError> {
        let message =
            self.ratchet
                .encrypt(plaintext, &self.local_identity, &self.remote_identity)?;
        Ok(match self.pending_pre_key {
            Some(p) => OmemoKeyMessage::PreKey(PreKeySignalMessage::new(
                p.pre_key_id,
                p.signed_pre_key_id,
                p.base_key,
                self.local_identity,
                message,
            )),
            None => OmemoKeyMessage::Normal(message),
        })
    }

    /// Decrypt a message on this session. The state changes only if it decrypts.
    ///
    /// A `PreKeySignalMessage` is accepted here only when it repeats the one that created this
    /// session (same base key and identity); otherwise [`DecryptionError::SessionMismatch`].
    pub fn decrypt(
        &mut self,
        message: &OmemoKeyMessage,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Zeroizing<Vec<u8>>, DecryptionError> {
        let inner = match message {
            OmemoKeyMessage::Normal(m) => m,
            OmemoKeyMessage::PreKey(m) => {
                if self.their_base_key != Some(m.base_key())
                    || m.identity_key() != self.remote_identity
                {
                    return Err(DecryptionError::SessionMismatch);
                }
                m.message()
            }
        };
        let plaintext =
            self.ratchet
                .decrypt(inner, &self.local_identity, &self.remote_identity, rng)?;
        self.pending_pre_key = None;
        Ok(Zeroizing::new(plaintext))
    }

    /// The serialisable state, for the caller to encrypt and store.
    pub fn pickle(&self) -> SessionPickle {
        let r = &self.ratchet;
        SessionPickle {
            version: SESSION_PICKLE_VERSION,
            local_identity: *self.local_identity.public_key().as_raw(),
            remote_identity: *self.remote_identity.public_key().as_raw(),
            root_key: *r.root_key.as_bytes(),
            sender_ratchet_secret: *r.sender.ratchet.secret_bytes(),
            sender_chain_key: *r.sender.chain_key.key_bytes(),
            sender_chain_index: r.sender.chain_key.index(),
            receivers: r
                .receivers
                .iter()
                .map(|c| ReceiverChainPickle {
                    ratchet_key: *c.ratchet_key.as_raw(),
                    chain_key: *c.chain_key.key_bytes(),
                    index: c.chain_key.index(),
                    skipped: c
                        .skipped
                        .iter()
                        .map(|k| MessageKeysPickle {
                            cipher_key: *k.cipher_key(),
                            mac_key: *k.mac_key(),
                            iv: *k.iv(),
                            counter: k.counter(),
                        })
                        .collect(),
                })
                .collect(),
            previous_counter: r.previous_counter,
            pending_pre_key: self.pending_pre_key.map(|p| PendingPreKeyPickle {
                pre_key_id: p.pre_key_id,
                signed_pre_key_id: p.signed_pre_key_id,
                base_key: *p.base_key.as_raw(),
            }),
            their_base_key: self.their_base_key.map(|k| *k.as_raw()),
        }
    }

    /// Restore a session from its pickle.
    pub fn from_pickle(pickle: &SessionPickle) -> Result<Self, PickleError> {
        if pickle.version != SESSION_PICKLE_VERSION {
            return Err(PickleError::UnsupportedVersion(pickle.version));
        }
        if pickle.receivers.len() > MAX_RECEIVER_CHAINS {
            return Err(PickleError::Inconsistent("too many receiving chains"));
        }
        if pickle
            .receivers
            .iter()
            .any(|c| c.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN)
        {
            return Err(PickleError::Inconsistent("too many skipped message keys"));
        }
        let receivers: VecDeque<ReceiverChain> = pickle
            .receivers
            .iter()
            .map(|c| ReceiverChain {
                ratchet_key: PublicKey::from_raw(c.ratchet_key),
                chain_key: ChainKey::new(c.chain_key, c.index),
                skipped: c
                    .skipped
                    .iter()
                    .map(|k| MessageKeys::from_parts(k.cipher_key, k.mac_key, k.iv, k.counter))
                    .collect(),
            })
            .collect();
        Ok(Self {
            local_identity: IdentityKey::new(PublicKey::from_raw(pickle.local_identity)),
            remote_identity: IdentityKey::new(PublicKey::from_raw(pickle.remote_identity)),
            ratchet: DoubleRatchet {
                root_key: RootKey::new(pickle.root_key),
                sender: SenderChain {
                    ratchet: KeyPair::from_secret_bytes(pickle.sender_ratchet_secret),
                    chain_key: ChainKey::new(pickle.sender_chain_key, pickle.sender_chain_index),
                },
                receivers,
                previous_counter: pickle.previous_counter,
            },
            pending_pre_key: pickle.pending_pre_key.as_ref().map(|p| PendingPreKey {
                pre_key_id: p.pre_key_id,
                signed_pre_key_id: p.signed_pre_key_id,
                base_key: PublicKey::from_raw(p.base_key),
            }),
            their_base_key: pickle.their_base_key.map(PublicKey::from_raw),
        })
    }
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("local_identity", &self.local_identity)
            .field("remote_identity", &self.remote_identity)
            .field("acknowledged", &self.is_acknowledged())
            .field("ratchet", &self.ratchet)
            .finish_non_exhaustive()
    }
}

/// The serialisable form of a [`Session`]. It holds secrets: encrypt it before storing.
/// Versioned ([`SESSION_PICKLE_VERSION`]) so that stored sessions can be migrated.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SessionPickle {
    version: u32,
    local_identity: [u8; 32],
    remote_identity: [u8; 32],
    root_key: [u8; 32],
    sender_ratchet_secret: [u8; 32],
    sender_chain_key: [u8; 32],
    sender_chain_index: u32,
    receivers: Vec<ReceiverChainPickle>,
    previous_counter: u32,
    pending_pre_key: Option<PendingPreKeyPickle>,
    their_base_key: Option<[u8; 32]>,
}

impl SessionPickle {
    /// The format version of this pickle.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl core::fmt::Debug for SessionPickle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionPickle")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct ReceiverChainPickle {
    ratchet_key: [u8; 32],
    chain_key: [u8; 32],
    index: u32,
    skipped: Vec<MessageKeysPickle>,
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct MessageKeysPickle {
    cipher_key: [u8; 32],
    mac_key: [u8; 32],
    iv: [u8; 16],
    counter: u32,
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct PendingPreKeyPickle {
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: [u8; 32],
}
