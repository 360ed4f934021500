//! Identity-key fingerprints in the form other OMEMO clients show them.
//!
//! Conversations, Dino, Gajim and python-omemo all display the Curve25519 form of the identity
//! key (32 bytes, without libsignal's `0x05` type prefix) as 64 lowercase hex digits in eight
//! groups of eight. Users compare these strings across clients, so the format is fixed.

use core::fmt;

/// The fingerprint of an OMEMO identity key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a Curve25519 (X25519) identity public key.
    pub fn from_curve25519_public(key: &[u8; 32]) -> Self {
        Self(*key)
    }

    /// The fingerprint of a key in libsignal's serialised form (`0x05 || key`), as found in
    /// OMEMO bundles. Returns `None` for any other length or type byte.
    pub fn from_serialized_public(serialized: &[u8]) -> Option<Self> {
        match serialized {
            [0x05, rest @ ..] => <[u8; 32]>::try_from(rest).ok().map(Self),
            _ => None,
        }
    }

    /// 64 lowercase hex digits without separators, as used in `xmpp:` verification URIs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Fingerprint {
    /// Eight space-separated groups of eight hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.chunks(4).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            for b in chunk {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_eight_lowercase_hex() {
        let key: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(0xa0));
        let fp = Fingerprint::from_curve25519_public(&key);
        let text = fp.to_string();
        let groups: Vec<&str> = text.split(' ').collect();
        assert_eq!(groups.len(), 8);
        assert!(groups.iter().all(|g| g.len() == 8));
        assert_eq!(text.replace(' ', ""), fp.to_hex());
        assert_eq!(&text[..8], "a0a7aeb5");
    }

    #[test]
    fn serialized_form_requires_type_byte_and_length() {
        let mut serialized = vec![0x05];
        serialized.extend_from_slice(&[1u8; 32]);
        assert!(Fingerprint::from_serialized_public(&serialized).is_some());
        serialized[0] = 0x06;
        assert!(Fingerprint::from_serialized_public(&serialized).is_none());
        assert!(Fingerprint::from_serialized_public(&serialized[..32]).is_none());
        assert!(Fingerprint::from_serialized_public(&[]).is_none());
    }
}
