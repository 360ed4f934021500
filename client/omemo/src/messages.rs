//! The two ratchet messages of OMEMO 0.3 on the wire (libsignal protocol version 3).
//!
//! - `SignalMessage` = `0x33 || protobuf || mac8`, where `mac8` is the first 8 bytes of
//!   `HMAC-SHA256(mac_key, IK_sender(33) || IK_receiver(33) || 0x33 || protobuf)`.
//! - `PreKeySignalMessage` = `0x33 || protobuf`; its `message` field holds a whole
//!   `SignalMessage`, which carries the MAC.
//!
//! The protobuf structures are proto2: presence matters. We always emit every field libsignal
//! requires (a `counter` of 0 included) and reject messages that lack one. The prost structs are
//! private; the public types are validated.

use prost::Message as _;
use subtle::ConstantTimeEq;

use crate::keys::{IdentityKey, KeyError, PublicKey};

/// libsignal's message version byte: current version 3 in the high nibble, 3 in the low one.
pub const VERSION_BYTE: u8 = 0x33;

/// The length of the truncated MAC at the end of a `SignalMessage`.
pub const MAC_LENGTH: usize = 8;

/// A ratchet message could not be decoded. The peer sent something malformed or incompatible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the version byte plus the MAC.
    #[error("the message is too short ({0} bytes)")]
    TooShort(usize),
    /// Not protocol version 3.
    #[error("unsupported message version byte {0:#04x}")]
    UnsupportedVersion(u8),
    /// The protobuf does not parse.
    #[error("the protobuf is malformed")]
    Protobuf,
    /// A field libsignal requires is absent.
    #[error("the required field `{0}` is missing")]
    MissingField(&'static str),
    /// A key field is not a valid `0x05 || u` key.
    #[error("invalid key in field `{field}`: {source}")]
    InvalidKey {
        /// The field holding the key.
        field: &'static str,
        /// Why the key was rejected.
        source: KeyError,
    },
}

mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct SignalMessage {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub ratchet_key: Option<Vec<u8>>,
        #[prost(uint32, optional, tag = "2")]
        pub counter: Option<u32>,
        #[prost(uint32, optional, tag = "3")]
        pub previous_counter: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub ciphertext: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PreKeySignalMessage {
        #[prost(uint32, optional, tag = "1")]
        pub pre_key_id: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub base_key: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub identity_key: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub message: Option<Vec<u8>>,
        #[prost(uint32, optional, tag = "5")]
        pub registration_id: Option<u32>,
        #[prost(uint32, optional, tag = "6")]
        pub signed_pre_key_id: Option<u32>,
    }
}

fn check_version(bytes: &[u8], min_len: usize) -> Result<&[u8], DecodeError> {
    match bytes {
        [version, rest @ ..] if bytes.len() >= min_len => {
            // libsignal would accept any low nibble, but the outer byte of a prekey message is
            // not authenticated; every implementation sends exactly 0x33 (python-oldmemo
            // rejects anything else too).
            if *version == VERSION_BYTE {
                Ok(rest)
            } else {
                Err(DecodeError::UnsupportedVersion(*version))
            }
        }
        _ => Err(DecodeError::TooShort(bytes.len())),
    }
}

fn key_field(field: &'static str, value: Option<Vec<u8>>) -> Result<PublicKey, DecodeError> {
    let bytes = value.ok_or(DecodeError::MissingField(field))?;
    PublicKey::from_bytes(&bytes).map_err(|source| DecodeError::InvalidKey { field, source })
}

/// A normal ratchet message (`SignalMessage`).
#[derive(Clone, PartialEq, Eq)]
pub struct SignalMessage {
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SignalMessage {
    pub(crate) fn new(
        mac_key: &[u8; 32],
        sender_identity: &IdentityKey,
        receiver_identity: &IdentityKey,
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        ciphertext: Vec<u8>,
    ) -> Self {
        let pb = proto::SignalMessage {
            ratchet_key: Some(ratchet_key.to_bytes().to_vec()),
            counter: Some(counter),
            previous_counter: Some(previous_counter),
            ciphertext: Some(ciphertext.clone()),
        };
        let mut serialized = Vec::with_capacity(1 + pb.encoded_len() + MAC_LENGTH);
        serialized.push(VERSION_BYTE);
        pb.encode_raw(&mut serialized);
        let mac = compute_mac(mac_key, sender_identity, receiver_identity, &serialized);
        serialized.extend_from_slice(&mac);
        Self {
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            serialized,
        }
    }

    /// Decode `0x33 || protobuf || mac8`. The MAC is checked later, by the session.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let rest = check_version(bytes, 1 + MAC_LENGTH)?;
        let pb_bytes = rest
            .get(..rest.len().saturating_sub(MAC_LENGTH))
            .ok_or(DecodeError::TooShort(bytes.len()))?;
        let pb = proto::SignalMessage::decode(pb_bytes).map_err(|_| DecodeError::Protobuf)?;
        let ratchet_key = key_field("ratchetKey", pb.ratchet_key)?;
        Ok(Self {
            ratchet_key,
            counter: pb.counter.ok_or(DecodeError::MissingField("counter"))?,
            // libsignal never reads previousCounter; tolerate its absence.
            previous_counter: pb.previous_counter.unwrap_or(0),
            ciphertext: pb
                .ciphertext
                .ok_or(DecodeError::MissingField("ciphertext"))?,
            serialized: bytes.to_vec(),
        })
    }

    /// The serialised message, exactly as sent or received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.serialized
    }

    /// The sender's current ratchet public key.
    pub fn ratchet_key(&self) -> PublicKey {
        self.ratchet_key
    }

    /// The message's index in the sender's chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The length of the sender's previous chain (informational; never used on receive).
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }

    /// The AES-256-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Check the truncated MAC over the received bytes, in constant time.
    pub(crate) fn verify_mac(
        &self,
        mac_key: &[u8; 32],
        sender_identity: &IdentityKey,
        receiver_identity: &IdentityKey,
    ) -> bool {
        let split = self.serialized.len().saturating_sub(MAC_LENGTH);
        let (body, mac) = self.serialized.split_at(split);
        let expected = compute_mac(mac_key, sender_identity, receiver_identity, body);
        let valid = mac.len() == MAC_LENGTH && bool::from(expected.ct_eq(mac));
        // Fuzz builds only (see Cargo.toml): let the fuzzer past the MAC into the ratchet.
        valid || cfg!(feature = "insecure-fuzzing-skip-mac")
    }
}

impl core::fmt::Debug for SignalMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignalMessage")
            .field("ratchet_key", &self.ratchet_key)
            .field("counter", &self.counter)
            .field("previous_counter", &self.previous_counter)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

fn compute_mac(
    mac_key: &[u8; 32],
    sender_identity: &IdentityKey,
    receiver_identity: &IdentityKey,
    body: &[u8],
) -> [u8; MAC_LENGTH] {
    let full = crate::session::chain_key::hmac_sha256(
        mac_key,
        &[
            &sender_identity.to_bytes(),
            &receiver_identity.to_bytes(),
            body,
        ],
    );
    let mut out = [0u8; MAC_LENGTH];
    out.copy_from_slice(&full[..MAC_LENGTH]);
    out
}

/// A message that establishes a session (`PreKeySignalMessage`): the X3DH parameters of the
/// initiator plus the first `SignalMessage`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreKeySignalMessage {
    registration_id: Option<u32>,
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: PublicKey,
    identity_key: IdentityKey,
    message: SignalMessage,
    serialized: Vec<u8>,
}

impl PreKeySignalMessage {
    pub(crate) fn new(
        pre_key_id: Option<u32>,
        signed_pre_key_id: u32,
        base_key: PublicKey,
        identity_key: IdentityKey,
        message: SignalMessage,
    ) -> Self {
        let pb = proto::PreKeySignalMessage {
            pre_key_id,
            base_key: Some(base_key.to_bytes().to_vec()),
            identity_key: Some(identity_key.to_bytes().to_vec()),
            message: Some(message.as_bytes().to_vec()),
            // Optional and ignored by every implementation; python-oldmemo leaves it unset too.
            registration_id: None,
            signed_pre_key_id: Some(signed_pre_key_id),
        };
        let mut serialized = Vec::with_capacity(1 + pb.encoded_len());
        serialized.push(VERSION_BYTE);
        pb.encode_raw(&mut serialized);
        Self {
            registration_id: None,
            pre_key_id,
            signed_pre_key_id,
            base_key,
            identity_key,
            message,
            serialized,
        }
    }

    /// Decode `0x33 || protobuf`, including the embedded `SignalMessage`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let rest = check_version(bytes, 1)?;
        let pb = proto::PreKeySignalMessage::decode(rest).map_err(|_| DecodeError::Protobuf)?;
        let signed_pre_key_id = pb
            .signed_pre_key_id
            .ok_or(DecodeError::MissingField("signedPreKeyId"))?;
        let base_key = key_field("baseKey", pb.base_key)?;
        let identity_key = IdentityKey::new(key_field("identityKey", pb.identity_key)?);
        let inner = pb.message.ok_or(DecodeError::MissingField("message"))?;
        let message = SignalMessage::from_bytes(&inner)?;
        Ok(Self {
            registration_id: pb.registration_id,
            pre_key_id: pb.pre_key_id,
            signed_pre_key_id,
            base_key,
            identity_key,
            message,
            serialized: bytes.to_vec(),
        })
    }

    /// The serialised message, exactly as sent or received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.serialized
    }

    /// The sender's registration id, if it sent one (ignored by OMEMO).
    pub fn registration_id(&self) -> Option<u32> {
        self.registration_id
    }

    /// The id of the one-time prekey the sender used, if any.
    pub fn pre_key_id(&self) -> Option<u32> {
        self.pre_key_id
    }

    /// The id of the signed prekey the sender used.
    pub fn signed_pre_key_id(&self) -> u32 {
        self.signed_pre_key_id
    }

    /// The sender's X3DH ephemeral ("base") key.
    pub fn base_key(&self) -> PublicKey {
        self.base_key
    }

    /// The sender's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// The embedded first ratchet message.
    pub fn message(&self) -> &SignalMessage {
        &self.message
    }
}

/// What goes into one `<key rid='…'>` element: a ratchet message of either kind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OmemoKeyMessage {
    /// A `SignalMessage` on an established session (`<key>`).
    Normal(SignalMessage),
    /// A `PreKeySignalMessage` (`<key prekey='true'>`).
    PreKey(PreKeySignalMessage),
}

impl OmemoKeyMessage {
    /// Decode the contents of a `<key>` element; `prekey` is its `prekey` attribute.
    pub fn from_bytes(bytes: &[u8], prekey: bool) -> Result<Self, DecodeError> {
        if prekey {
            PreKeySignalMessage::from_bytes(bytes).map(Self::PreKey)
        } else {
            SignalMessage::from_bytes(bytes).map(Self::Normal)
        }
    }

    /// Whether the `<key>` element gets `prekey='true'`.
    pub fn is_prekey(&self) -> bool {
        matches!(self, Self::PreKey(_))
    }

    /// The bytes to base64-encode into the `<key>` element.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Normal(m) => m.as_bytes(),
            Self::PreKey(m) => m.as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ik(b: u8) -> IdentityKey {
        IdentityKey::new(PublicKey::from_raw([b; 32]))
    }

    #[test]
    fn signal_message_layout_and_counter_zero_is_emitted() {
        let m = SignalMessage::new(
            &[7; 32],
            &ik(1),
            &ik(2),
            PublicKey::from_raw([3; 32]),
            0,
            0,
            vec![0xAA; 16],
        );
        let bytes = m.as_bytes();
        assert_eq!(bytes[0], 0x33);
        // field 1 (ratchetKey, 33 bytes), then field 2 = 0 present, field 3 = 0 present.
        assert_eq!(&bytes[1..3], &[0x0A, 33]);
        assert_eq!(&bytes[3..36], &PublicKey::from_raw([3; 32]).to_bytes());
        assert_eq!(&bytes[36..40], &[0x10, 0x00, 0x18, 0x00]);
        assert_eq!(&bytes[40..42], &[0x22, 16]);
        assert_eq!(bytes.len(), 42 + 16 + MAC_LENGTH);

        let parsed = SignalMessage::from_bytes(bytes).unwrap();
        assert_eq!(parsed, m);
        assert!(parsed.verify_mac(&[7; 32], &ik(1), &ik(2)));
        // The MAC puts the sender first: swapped identities fail.
        assert!(!parsed.verify_mac(&[7; 32], &ik(2), &ik(1)));
        assert!(!parsed.verify_mac(&[8; 32], &ik(1), &ik(2)));
    }

    #[test]
    fn missing_required_fields_are_rejected() {
        let pb = proto::SignalMessage {
            ratchet_key: Some(PublicKey::from_raw([3; 32]).to_bytes().to_vec()),
            counter: None,
            previous_counter: Some(0),
            ciphertext: Some(vec![1; 16]),
        };
        let mut bytes = vec![0x33];
        bytes.extend(pb.encode_to_vec());
        bytes.extend([0; 8]);
        assert_eq!(
            SignalMessage::from_bytes(&bytes),
            Err(DecodeError::MissingField("counter"))
        );
        assert_eq!(
            SignalMessage::from_bytes(&[0x23; 20]),
            Err(DecodeError::UnsupportedVersion(0x23))
        );
        assert_eq!(
            SignalMessage::from_bytes(&[0x33; 8]),
            Err(DecodeError::TooShort(8))
        );

        let pk = proto::PreKeySignalMessage {
            pre_key_id: Some(1),
            base_key: Some(PublicKey::from_raw([3; 32]).to_bytes().to_vec()),
            identity_key: Some(ik(4).to_bytes().to_vec()),
            message: Some(bytes.clone()),
            registration_id: None,
            signed_pre_key_id: None,
        };
        let mut pk_bytes = vec![0x33];
        pk_bytes.extend(pk.encode_to_vec());
        assert_eq!(
            PreKeySignalMessage::from_bytes(&pk_bytes),
            Err(DecodeError::MissingField("signedPreKeyId"))
        );
    }

    #[test]
    fn prekey_message_round_trip() {
        let inner = SignalMessage::new(
            &[7; 32],
            &ik(1),
            &ik(2),
            PublicKey::from_raw([3; 32]),
            5,
            2,
            vec![0xAA; 32],
        );
        let m = PreKeySignalMessage::new(Some(17), 1, PublicKey::from_raw([9; 32]), ik(1), inner);
        let parsed = PreKeySignalMessage::from_bytes(m.as_bytes()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.pre_key_id(), Some(17));
        assert_eq!(parsed.message().counter(), 5);
        let key_msg = OmemoKeyMessage::from_bytes(m.as_bytes(), true).unwrap();
        assert!(key_msg.is_prekey());
        assert_eq!(key_msg.as_bytes(), m.as_bytes());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignalMessage::from_bytes(&bytes);
            let _ = PreKeySignalMessage::from_bytes(&bytes);
            let mut versioned = bytes.clone();
            versioned.insert(0, 0x33);
            let _ = SignalMessage::from_bytes(&versioned);
            let _ = PreKeySignalMessage::from_bytes(&versioned);
        }
    }
}
