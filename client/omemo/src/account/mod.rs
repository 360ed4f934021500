//! Our device: identity key, signed prekey (with rotation) and one-time prekeys; creates
//! sessions (after vodozemac's `olm::account`).

mod bundle;

use std::collections::BTreeMap;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use self::bundle::{Bundle, BundleError, RemoteBundle, MAX_REMOTE_PRE_KEYS};
use crate::{
    fingerprint::Fingerprint,
    keys::{IdentityKey, IdentityKeyPair, KeyPair, OneTimePreKey, SignedPreKey, SIGNATURE_LENGTH},
    messages::PreKeySignalMessage,
    session::{DecryptionError, PickleError, Session},
};

/// How many one-time prekeys we publish.
pub const ONE_TIME_PRE_KEY_COUNT: usize = 100;

/// Default for [`Account::replenish_one_time_pre_keys`]: top up when fewer remain.
pub const ONE_TIME_PRE_KEY_THRESHOLD: usize = 50;

/// Prekey ids are 24-bit in libsignal (`Medium.MAX_VALUE`).
pub const MAX_PRE_KEY_ID: u32 = 0x00FF_FFFF;

/// At most this many one-time prekeys are held (used and unused together).
pub const MAX_ONE_TIME_PRE_KEYS: usize = 1000;

/// The version written into new [`AccountPickle`]s.
pub const ACCOUNT_PICKLE_VERSION: u32 = 1;

/// An inbound session could not be created from a `PreKeySignalMessage`.
/// The account is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundSessionError {
    /// The message names a signed prekey we do not have (any more).
    #[error("unknown signed prekey {0}")]
    UnknownSignedPreKey(u32),
    /// The message names a one-time prekey we do not have (any more).
    #[error("unknown one-time prekey {0}")]
    UnknownOneTimePreKey(u32),
    /// The embedded message did not decrypt.
    #[error(transparent)]
    Decryption(#[from] DecryptionError),
}

/// A new inbound session and the plaintext of the message that created it.
pub struct InboundCreationResult {
    /// The session; store it (as a pickle) for the sender's device.
    pub session: Session,
    /// The decrypted ratchet plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for InboundCreationResult {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundCreationResult")
            .field("session", &self.session)
            .field("plaintext_len", &self.plaintext.len())
            .finish()
    }
}

#[derive(Clone)]
struct OneTimeEntry {
    key: OneTimePreKey,
    consumed: bool,
}

/// Our OMEMO device.
pub struct Account {
    identity: IdentityKeyPair,
    signed_pre_key: SignedPreKey,
    /// The previous signed prekey and the time (caller's clock) until which it stays usable.
    previous_signed_pre_key: Option<(SignedPreKey, u64)>,
    one_time_pre_keys: BTreeMap<u32, OneTimeEntry>,
    next_pre_key_id: u32,
}

impl Account {
    /// A new device: fresh identity, signed prekey 1 and [`ONE_TIME_PRE_KEY_COUNT`] one-time
    /// prekeys.
    pub fn new(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed_pre_key = SignedPreKey::generate(1, &identity, rng);
        let mut account = Self {
            identity,
            signed_pre_key,
            previous_signed_pre_key: None,
            one_time_pre_keys: BTreeMap::new(),
            next_pre_key_id: 1,
        };
        account.generate_one_time_pre_keys(ONE_TIME_PRE_KEY_COUNT, rng);
        account
    }

    /// Our identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity.identity_key()
    }

    /// Our fingerprint as other clients show it.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity_key().fingerprint()
    }

    /// The current signed prekey.
    pub fn signed_pre_key(&self) -> &SignedPreKey {
        &self.signed_pre_key
    }

    /// Replace the signed prekey with a new one (next id). The old one keeps working for
    /// prekey messages until `now + grace_period` (caller's clock and unit), see
    /// [`Account::expire_signed_pre_keys`]. Only one previous key is kept: one still in its
    /// grace period is dropped by the next rotation. Republish the bundle afterwards.
    pub fn rotate_signed_pre_key(
        &mut self,
        now: u64,
        grace_period: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) {
        let id = if self.signed_pre_key.id() >= MAX_PRE_KEY_ID {
            1
        } else {
            self.signed_pre_key.id() + 1
        };
        let new = SignedPreKey::generate(id, &self.identity, rng);
        let old = core::mem::replace(&mut self.signed_pre_key, new);
        self.previous_signed_pre_key = Some((old, now.saturating_add(grace_period)));
    }

    /// Forget the previous signed prekey once its grace period is over.
    pub fn expire_signed_pre_keys(&mut self, now: u64) {
        if matches!(self.previous_signed_pre_key, Some((_, until)) if now >= until) {
            self.previous_signed_pre_key = None;
        }
    }

    /// The number of one-time prekeys not yet used by a peer.
    pub fn unused_one_time_pre_keys(&self) -> usize {
        self.one_time_pre_keys
            .values()
            .filter(|e| !e.consumed)
            .count()
    }

    /// The number of one-time prekeys that peers used and that are still held (until
    /// [`Account::remove_consumed_one_time_pre_keys`]).
    pub fn consumed_one_time_pre_keys(&self) -> usize {
        self.one_time_pre_keys
            .values()
            .filter(|e| e.consumed)
            .count()
    }

    /// Generate up to `count` more one-time prekeys (never beyond
    /// [`MAX_ONE_TIME_PRE_KEYS`] held). Returns how many were generated.
    pub fn generate_one_time_pre_keys(
        &mut self,
        count: usize,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> usize {
        let room = MAX_ONE_TIME_PRE_KEYS.saturating_sub(self.one_time_pre_keys.len());
        let count = count.min(room);
        for _ in 0..count {
            let mut id = self.next_pre_key_id;
            while id == 0 || self.one_time_pre_keys.contains_key(&id) {
                id = if id >= MAX_PRE_KEY_ID { 1 } else { id + 1 };
            }
            self.next_pre_key_id = if id >= MAX_PRE_KEY_ID { 1 } else { id + 1 };
            self.one_time_pre_keys.insert(
                id,
                OneTimeEntry {
                    key: OneTimePreKey::generate(id, rng),
                    consumed: false,
                },
            );
        }
        count
    }

    /// If fewer than `threshold` unused one-time prekeys remain, generate new ones up to
    /// [`ONE_TIME_PRE_KEY_COUNT`]. Returns whether the bundle changed (republish it then).
    pub fn replenish_one_time_pre_keys(
        &mut self,
        threshold: usize,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> bool {
        let unused = self.unused_one_time_pre_keys();
        if unused >= threshold {
            return false;
        }
        self.generate_one_time_pre_keys(
            ONE_TIME_PRE_KEY_COUNT - unused.min(ONE_TIME_PRE_KEY_COUNT),
            rng,
        ) > 0
    }

    /// Delete the one-time prekeys that peers have used. Call it once the message archive
    /// has been caught up, so delayed copies of the same prekey message still decrypt.
    /// Returns how many were removed.
    pub fn remove_consumed_one_time_pre_keys(&mut self) -> usize {
        let before = self.one_time_pre_keys.len();
        self.one_time_pre_keys.retain(|_, e| !e.consumed);
        before - self.one_time_pre_keys.len()
    }

    /// Our bundle, to publish: identity, current signed prekey and unused one-time prekeys.
    pub fn bundle(&self) -> Bundle {
        Bundle {
            identity_key: self.identity_key(),
            signed_pre_key_id: self.signed_pre_key.id(),
            signed_pre_key: self.signed_pre_key.public_key(),
            signed_pre_key_signature: *self.signed_pre_key.signature(),
            pre_keys: self
                .one_time_pre_keys
                .values()
                .filter(|e| !e.consumed)
                .map(|e| (e.key.id(), e.key.public_key()))
                .collect(),
        }
    }

    /// Start a session with a contact's device from its verified bundle, using one of its
    /// one-time prekeys chosen at random (or none if it published none).
    pub fn create_outbound_session(
        &self,
        bundle: &RemoteBundle,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Session {
        let pre_keys = bundle.pre_keys();
        let one_time = if pre_keys.is_empty() {
            None
        } else {
            let index = usize::try_from(rng.next_u32()).unwrap_or(0) % pre_keys.len();
            pre_keys.get(index).copied()
        };
        Session::new_outbound(
            &self.identity,
            bundle.identity_key(),
            (bundle.signed_pre_key_id(), bundle.signed_pre_key()),
            one_time,
            rng,
        )
    }

    /// Accept a session a peer started with a `PreKeySignalMessage`.
    ///
    /// If a session with the message's [`PreKeySignalMessage::base_key`] already exists, decrypt
    /// with [`Session::decrypt`] instead (the initiator repeats prekey messages until we
    /// answer). The account changes only if the embedded message decrypts: then the one-time
    /// prekey is marked used (no longer published; deleted by
    /// [`Account::remove_consumed_one_time_pre_keys`]).
    pub fn create_inbound_session(
        &mut self,
        message: &PreKeySignalMessage,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<InboundCreationResult, InboundSessionError> {
        let spk_id = message.signed_pre_key_id();
        let signed_pre_key = if self.signed_pre_key.id() == spk_id {
            &self.signed_pre_key
        } else {
            match &self.previous_signed_pre_key {
                Some((spk, _)) if spk.id() == spk_id => spk,
                _ => return Err(InboundSessionError::UnknownSignedPreKey(spk_id)),
            }
        };
        let one_time = match message.pre_key_id() {
            Some(id) => Some(
                self.one_time_pre_keys
                    .get(&id)
                    .map(|e| &e.key)
                    .ok_or(InboundSessionError::UnknownOneTimePreKey(id))?,
            ),
            None => None,
        };
        let mut session = Session::new_inbound(&self.identity, signed_pre_key, one_time, message);
        let plaintext = session.decrypt(
            &crate::messages::OmemoKeyMessage::PreKey(message.clone()),
            rng,
        )?;
        if let Some(id) = message.pre_key_id() {
            if let Some(entry) = self.one_time_pre_keys.get_mut(&id) {
                entry.consumed = true;
            }
        }
        Ok(InboundCreationResult { session, plaintext })
    }

    /// The serialisable state, for the caller to encrypt and store.
    pub fn pickle(&self) -> AccountPickle {
        let spk = |k: &SignedPreKey| SignedPreKeyPickle {
            id: k.id(),
            secret: *k.key_pair().secret_bytes(),
            signature: k.signature().to_vec(),
        };
        AccountPickle {
            version: ACCOUNT_PICKLE_VERSION,
            identity: *self.identity.key_pair().secret_bytes(),
            signed_pre_key: spk(&self.signed_pre_key),
            previous_signed_pre_key: self.previous_signed_pre_key.as_ref().map(|(k, until)| {
                PreviousSignedPreKeyPickle {
                    key: spk(k),
                    until: *until,
                }
            }),
            one_time_pre_keys: self
                .one_time_pre_keys
                .values()
                .map(|e| OneTimePreKeyPickle {
                    id: e.key.id(),
                    secret: *e.key.key_pair().secret_bytes(),
                    consumed: e.consumed,
                })
                .collect(),
            next_pre_key_id: self.next_pre_key_id,
        }
    }

    /// Restore an account from its pickle.
    pub fn from_pickle(pickle: &AccountPickle) -> Result<Self, PickleError> {
        if pickle.version != ACCOUNT_PICKLE_VERSION {
            return Err(PickleError::UnsupportedVersion(pickle.version));
        }
        if pickle.one_time_pre_keys.len() > MAX_ONE_TIME_PRE_KEYS {
            return Err(PickleError::Inconsistent("too many one-time prekeys"));
        }
        let spk = |p: &SignedPreKeyPickle| -> Result<SignedPreKey, PickleError> {
            let signature: [u8; SIGNATURE_LENGTH] = p
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| PickleError::Inconsistent("signature length"))?;
            Ok(SignedPreKey::from_parts(
                p.id,
                KeyPair::from_secret_bytes(p.secret),
                signature,
            ))
        };
        let previous = match &pickle.previous_signed_pre_key {
            Some(p) => Some((spk(&p.key)?, p.until)),
            None => None,
        };
        Ok(Self {
            identity: IdentityKeyPair::from_secret_bytes(pickle.identity),
            signed_pre_key: spk(&pickle.signed_pre_key)?,
            previous_signed_pre_key: previous,
            one_time_pre_keys: pickle
                .one_time_pre_keys
                .iter()
                .map(|p| {
                    (
                        p.id,
                        OneTimeEntry {
                            key: OneTimePreKey::from_parts(
                                p.id,
                                KeyPair::from_secret_bytes(p.secret),
                            ),
                            consumed: p.consumed,
                        },
                    )
                })
                .collect(),
            next_pre_key_id: pickle.next_pre_key_id,
        })
    }
}

impl core::fmt::Debug for Account {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Account")
            .field("identity_key", &self.identity_key())
            .field("signed_pre_key_id", &self.signed_pre_key.id())
            .field("one_time_pre_keys", &self.one_time_pre_keys.len())
            .finish_non_exhaustive()
    }
}

/// The serialisable form of an [`Account`]. It holds every private key of the device:
/// encrypt it before storing. Versioned ([`ACCOUNT_PICKLE_VERSION`]) for migrations.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AccountPickle {
    version: u32,
    identity: [u8; 32],
    signed_pre_key: SignedPreKeyPickle,
    previous_signed_pre_key: Option<PreviousSignedPreKeyPickle>,
    one_time_pre_keys: Vec<OneTimePreKeyPickle>,
    next_pre_key_id: u32,
}

impl AccountPickle {
    /// The format version of this pickle.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl core::fmt::Debug for AccountPickle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AccountPickle")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct SignedPreKeyPickle {
    id: u32,
    secret: [u8; 32],
    signature: Vec<u8>,
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct PreviousSignedPreKeyPickle {
    key: SignedPreKeyPickle,
    until: u64,
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct OneTimePreKeyPickle {
    id: u32,
    secret: [u8; 32],
    consumed: bool,
}
