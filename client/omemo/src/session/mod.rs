//! The Double Ratchet session, one module per concept (after vodozemac's `olm::session`).

pub mod chain_key;
pub mod message_key;
