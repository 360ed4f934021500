//! The Double Ratchet state of one session: the root key, our sending chain and up to
//! [`MAX_RECEIVER_CHAINS`] receiving chains (libsignal `SessionState`, minus the X3DH parts).
//!
//! Decryption is two-phase: everything is derived on the side, the MAC is checked and the
//! ciphertext decrypted, and only then is the new state committed. A forged or corrupted
//! message therefore never changes the state.

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::{
    chain_key::ChainKey,
    message_key::MessageKeys,
    receiver_chain::{advance, ReceiverChain},
    root_key::RootKey,
    DecryptionError, EncryptionError,
};
use crate::{
    keys::{IdentityKey, KeyPair, PublicKey},
    messages::SignalMessage,
};

/// At most this many receiving chains are kept (libsignal's 5); the oldest is dropped.
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// At most this many skipped message keys are kept per session, over all receiving chains;
/// beyond it the oldest keys of the oldest chains are dropped.
pub const MAX_SKIPPED_KEYS_TOTAL: usize = 5000;

/// Our sending chain: our current ratchet key pair and its chain key.
#[derive(Clone)]
pub(crate) struct SenderChain {
    pub(crate) ratchet: KeyPair,
    pub(crate) chain_key: ChainKey,
}

#[derive(Clone)]
pub(crate) struct DoubleRatchet {
    pub(crate) root_key: RootKey,
    pub(crate) sender: SenderChain,
    /// Oldest first.
    pub(crate) receivers: VecDeque<ReceiverChain>,
    pub(crate) previous_counter: u32,
}

impl DoubleRatchet {
    /// The initiator after X3DH: Bob's signed prekey is his first ratchet key; the X3DH chain
    /// key receives on it, and a fresh ratchet key of ours starts the sending chain.
    pub(crate) fn alice(
        root_key: RootKey,
        chain_key: ChainKey,
        their_signed_pre_key: PublicKey,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let ratchet = KeyPair::generate(rng);
        let (root_key, sending) = root_key.create_chain(&their_signed_pre_key, &ratchet);
        let mut receivers = VecDeque::new();
        receivers.push_back(ReceiverChain::new(their_signed_pre_key, chain_key));
        Self {
            root_key,
            sender: SenderChain {
                ratchet,
                chain_key: sending,
            },
            receivers,
            previous_counter: 0,
        }
    }

    /// The responder after X3DH: our signed prekey is our first ratchet key and the X3DH
    /// chain key sends on it.
    pub(crate) fn bob(root_key: RootKey, chain_key: ChainKey, signed_pre_key: KeyPair) -> Self {
        Self {
            root_key,
            sender: SenderChain {
                ratchet: signed_pre_key,
                chain_key,
            },
            receivers: VecDeque::new(),
            previous_counter: 0,
        }
    }

    pub(crate) fn encrypt(
        &mut self,
        plaintext: &[u8],
        ours: &IdentityKey,
        theirs: &IdentityKey,
    ) -> Result<SignalMessage, EncryptionError> {
        let next = self
            .sender
            .chain_key
            .next()
            .ok_or(EncryptionError::ChainExhausted)?;
        let keys = self.sender.chain_key.message_keys();
        let message = SignalMessage::new(
            keys.mac_key(),
            ours,
            theirs,
            self.sender.ratchet.public_key(),
            keys.counter(),
            self.previous_counter,
            keys.encrypt(plaintext),
        );
        self.sender.chain_key = next;
        Ok(message)
    }

    pub(crate) fn decrypt(
        &mut self,
        message: &SignalMessage,
        ours: &IdentityKey,
        theirs: &IdentityKey,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, DecryptionError> {
        let ratchet_key = message.ratchet_key();
        let counter = message.counter();
        let existing = self
            .receivers
            .iter()
            .position(|c| c.ratchet_key == ratchet_key);

        let Some(index) = existing else {
            // A new ratchet key from the peer: a DH ratchet step, committed only on success.
            let (root_key, receiving) = self
                .root_key
                .create_chain(&ratchet_key, &self.sender.ratchet);
            let adv = advance(&receiving, counter)?;
            let plaintext = open(&adv.keys, message, theirs, ours)?;

            let ratchet = KeyPair::generate(rng);
            let (root_key, sending) = root_key.create_chain(&ratchet_key, &ratchet);
            let mut chain = ReceiverChain::new(ratchet_key, receiving);
            chain.commit(adv);
            self.receivers.push_back(chain);
            while self.receivers.len() > MAX_RECEIVER_CHAINS {
                self.receivers.pop_front();
            }
            self.root_key = root_key;
            // PN = the number of messages sent on the chain we are leaving (see PROTOCOLS.md
            // §3, "PN quirk"); receivers never rely on it.
            self.previous_counter = self.sender.chain_key.index();
            self.sender = SenderChain {
                ratchet,
                chain_key: sending,
            };
            self.enforce_total_skipped_limit();
            return Ok(plaintext);
        };

        let chain = self
            .receivers
            .get_mut(index)
            .ok_or(DecryptionError::ChainExhausted)?;
        if counter < chain.chain_key.index() {
            let position = chain
                .find_skipped(counter)
                .ok_or(DecryptionError::Duplicate { counter })?;
            let keys = chain
                .skipped
                .get(position)
                .ok_or(DecryptionError::Duplicate { counter })?;
            let plaintext = open(keys, message, theirs, ours)?;
            chain.skipped.remove(position);
            return Ok(plaintext);
        }
        let adv = advance(&chain.chain_key, counter)?;
        let plaintext = open(&adv.keys, message, theirs, ours)?;
        chain.commit(adv);
        self.enforce_total_skipped_limit();
        Ok(plaintext)
    }

    fn enforce_total_skipped_limit(&mut self) {
        let mut total: usize = self.receivers.iter().map(|c| c.skipped.len()).sum();
        for chain in self.receivers.iter_mut() {
            while total > MAX_SKIPPED_KEYS_TOTAL && chain.skipped.pop_front().is_some() {
                total -= 1;
            }
        }
    }

    /// The number of stored skipped message keys.
    pub(crate) fn skipped_keys(&self) -> usize {
        self.receivers.iter().map(|c| c.skipped.len()).sum()
    }
}

/// Verify the MAC (sender first), then decrypt.
fn open(
    keys: &MessageKeys,
    message: &SignalMessage,
    sender: &IdentityKey,
    receiver: &IdentityKey,
) -> Result<Vec<u8>, DecryptionError> {
    if !message.verify_mac(keys.mac_key(), sender, receiver) {
        return Err(DecryptionError::InvalidMac);
    }
    keys.decrypt(message.ciphertext())
        .ok_or(DecryptionError::InvalidCiphertext)
}

impl core::fmt::Debug for DoubleRatchet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DoubleRatchet")
            .field("sending_ratchet_key", &self.sender.ratchet.public_key())
            .field("sending_index", &self.sender.chain_key.index())
            .field("receivers", &self.receivers)
            .field("previous_counter", &self.previous_counter)
            .finish_non_exhaustive()
    }
}
