//! Saved documents (the OMEMO device, the web app's roster and history): one byte naming the
//! format version, then the document in [postcard](https://postcard.jamesmunns.com/wire-format).
//! Version 1 of each was JSON, so a document starting with `{` is an earlier version's.

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

/// Why a saved document could not be read. Never quotes the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentError {
    /// JSON: written by an earlier version.
    Earlier,
    /// A version newer than the reader's.
    Newer(u8),
    /// Damaged: cut short, or not what the version says.
    Truncated,
    /// Damaged otherwise, or not a saved document at all.
    Malformed,
}

impl DocumentError {
    /// A short, content-free description.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Earlier => "saved by an earlier version of Sotto",
            Self::Newer(_) => "saved by a newer version of Sotto",
            Self::Truncated => "truncated",
            Self::Malformed => "unexpected content",
        }
    }
}

/// `value` as a document of `version`, in a buffer wiped on drop (`capacity` is reserved up
/// front, so that growing leaves no copies behind).
pub fn encode(version: u8, value: &impl Serialize, capacity: usize) -> Zeroizing<Vec<u8>> {
    let mut buffer = Vec::with_capacity(capacity);
    buffer.push(version);
    // Serialising plain data into a Vec cannot fail; an empty document reads as malformed.
    Zeroizing::new(postcard::to_extend(value, buffer).unwrap_or_default())
}

/// Reads a document [`encode`] wrote with `version`; nothing may follow it.
pub fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, DocumentError> {
    match bytes.split_first() {
        Some((&found, rest)) if found == version => match postcard::take_from_bytes(rest) {
            Ok((value, [])) => Ok(value),
            Ok(_) => Err(DocumentError::Malformed),
            Err(postcard::Error::DeserializeUnexpectedEnd) => Err(DocumentError::Truncated),
            Err(_) => Err(DocumentError::Malformed),
        },
        Some((b'{', _)) => Err(DocumentError::Earlier),
        // Version bytes stay below the printable range, where JSON and text begin.
        Some((&found, _)) if found > version && found < b' ' => Err(DocumentError::Newer(found)),
        _ => Err(DocumentError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let doc = encode(2, &("alice", 7u32), 64);
        assert_eq!(
            decode::<(String, u32)>(2, &doc),
            Ok(("alice".to_owned(), 7))
        );
        assert_eq!(
            decode::<(String, u32)>(2, &doc[..doc.len() - 1]),
            Err(DocumentError::Truncated)
        );
        let mut longer = doc.to_vec();
        longer.push(0);
        assert_eq!(
            decode::<(String, u32)>(2, &longer),
            Err(DocumentError::Malformed)
        );
        let mut newer = doc.to_vec();
        newer[0] = 3;
        assert_eq!(
            decode::<(String, u32)>(2, &newer),
            Err(DocumentError::Newer(3))
        );
        assert_eq!(
            decode::<(String, u32)>(2, b"{\"a\":1}"),
            Err(DocumentError::Earlier)
        );
        assert_eq!(
            decode::<(String, u32)>(2, b""),
            Err(DocumentError::Malformed)
        );
        assert_eq!(
            decode::<(String, u32)>(2, b"hello"),
            Err(DocumentError::Malformed)
        );
    }
}
