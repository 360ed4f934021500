//! A receiving chain: the peer's ratchet key, our chain key for it, and the message keys we
//! skipped over (bounded), like vodozemac's `olm::session::receiver_chain`.

use std::collections::VecDeque;

use super::{chain_key::ChainKey, message_key::MessageKeys, DecryptionError};
use crate::keys::PublicKey;

/// At most this many skipped message keys are kept per receiving chain (libsignal's 2000).
pub const MAX_SKIPPED_KEYS_PER_CHAIN: usize = 2000;

/// A message more than this many positions ahead of its chain is rejected (libsignal's 2000).
pub const MAX_MESSAGES_AHEAD: u32 = 2000;

/// Keys derived for a message ahead of (or at) the chain's position, not yet committed.
pub(crate) struct Advance {
    pub(crate) skipped: Vec<MessageKeys>,
    pub(crate) keys: MessageKeys,
    pub(crate) next: ChainKey,
}

/// Derive the keys for `counter` from `chain_key` without changing anything.
pub(crate) fn advance(chain_key: &ChainKey, counter: u32) -> Result<Advance, DecryptionError> {
    let current = chain_key.index();
    if counter < current {
        return Err(DecryptionError::Duplicate { counter });
    }
    if counter - current > MAX_MESSAGES_AHEAD {
        return Err(DecryptionError::TooFarAhead { counter, current });
    }
    let mut skipped = Vec::new();
    let mut chain = chain_key.clone();
    while chain.index() < counter {
        skipped.push(chain.message_keys());
        chain = chain.next().ok_or(DecryptionError::ChainExhausted)?;
    }
    let keys = chain.message_keys();
    let next = chain.next().ok_or(DecryptionError::ChainExhausted)?;
    Ok(Advance {
        skipped,
        keys,
        next,
    })
}

/// One receiving chain.
#[derive(Clone)]
pub(crate) struct ReceiverChain {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) chain_key: ChainKey,
    /// Oldest first.
    pub(crate) skipped: VecDeque<MessageKeys>,
}

impl ReceiverChain {
    pub(crate) fn new(ratchet_key: PublicKey, chain_key: ChainKey) -> Self {
        Self {
            ratchet_key,
            chain_key,
            skipped: VecDeque::new(),
        }
    }

    /// The position of the stored key for `counter`, if we skipped that message.
    pub(crate) fn find_skipped(&self, counter: u32) -> Option<usize> {
        self.skipped.iter().position(|k| k.counter() == counter)
    }

    /// Commit an [`Advance`] after its message decrypted; drops the oldest skipped keys
    /// beyond [`MAX_SKIPPED_KEYS_PER_CHAIN`].
    pub(crate) fn commit(&mut self, advance: Advance) {
        self.chain_key = advance.next;
        self.skipped.extend(advance.skipped);
        while self.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN {
            self.skipped.pop_front();
        }
    }
}

impl core::fmt::Debug for ReceiverChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiverChain")
            .field("ratchet_key", &self.ratchet_key)
            .field("index", &self.chain_key.index())
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_bounds_and_duplicates() {
        let ck = ChainKey::new([1; 32], 5);
        assert!(matches!(
            advance(&ck, 4),
            Err(DecryptionError::Duplicate { counter: 4 })
        ));
        assert!(matches!(
            advance(&ck, 5 + MAX_MESSAGES_AHEAD + 1),
            Err(DecryptionError::TooFarAhead { .. })
        ));
        let a = advance(&ck, 5 + MAX_MESSAGES_AHEAD).unwrap();
        assert_eq!(a.skipped.len(), MAX_MESSAGES_AHEAD as usize);
        assert_eq!(a.keys.counter(), 5 + MAX_MESSAGES_AHEAD);
        assert_eq!(a.next.index(), 6 + MAX_MESSAGES_AHEAD);

        let mut chain = ReceiverChain::new(PublicKey::from_raw([2; 32]), ck);
        chain.commit(a);
        let b = advance(&chain.chain_key, chain.chain_key.index() + 10).unwrap();
        chain.commit(b);
        assert_eq!(chain.skipped.len(), MAX_SKIPPED_KEYS_PER_CHAIN);
        // The oldest were dropped.
        assert_eq!(chain.find_skipped(5), None);
        assert!(chain.find_skipped(5 + MAX_MESSAGES_AHEAD + 1).is_some());
        assert!(!format!("{chain:?}").contains("key: ["));
    }

    #[test]
    fn never_wraps_at_the_end_of_the_chain() {
        let ck = ChainKey::new([1; 32], u32::MAX);
        assert!(matches!(
            advance(&ck, u32::MAX),
            Err(DecryptionError::ChainExhausted)
        ));
    }
}
