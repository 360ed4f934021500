//! The stringprep profiles XMPP needs (RFC 3454): Nodeprep and Resourceprep for JIDs (RFC 6122
//! appendices A and B), Nameprep for domains (RFC 3491) and SASLprep for passwords (RFC 4013).
//!
//! Written here rather than taken from the `stringprep` crate because of the web app's size: the
//! crate brings complete Unicode normalisation and bidi-class tables (more than 200 KB of wasm),
//! while RFC 3454's own tables fit in about 12 KB ([`super::tables`]) and the browser already
//! carries a complete NFKC in `String.prototype.normalize`. Native builds normalise with the
//! `unicode-normalization` crate. Both follow the current Unicode version, as the crate does;
//! the tables are Unicode 3.2's, as RFC 3454 and the servers' libidn are. Code points Unicode 3.2
//! does not assign are refused before normalising, so only characters whose NFKC has been stable
//! since then reach it. Every code point gives the same result as the `stringprep` crate, except
//! that the crate lets some unassigned ones through (tested below).
//!
//! Strings are treated as stored strings: code points Unicode 3.2 does not assign are refused.

use std::borrow::Cow;

use zeroize::Zeroizing;

use super::tables::{
    BIDI_L, BIDI_R_AL, CASE_FOLD_MULTI, CASE_FOLD_RUNS, MAPPED_TO_NOTHING, NON_ASCII_SPACE,
    PROHIBITED, UNASSIGNED,
};

/// Why a string cannot be prepared. Carries no part of the string: it may be a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrepError {
    /// A character the profile prohibits.
    #[error("contains a character that is not allowed here")]
    Prohibited,
    /// Right-to-left text breaking RFC 3454 §6.
    #[error("mixes right-to-left and left-to-right text in a way that is not allowed")]
    Bidi,
    /// A code point Unicode 3.2 does not assign.
    #[error("contains a character that Unicode 3.2 does not assign")]
    Unassigned,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Node,
    Resource,
    Name,
    Sasl,
}

/// Nodeprep (RFC 6122 appendix A): the local part of a JID.
pub fn nodeprep(s: &str) -> Result<Cow<'_, str>, PrepError> {
    prepare(s, Profile::Node)
}

/// Resourceprep (RFC 6122 appendix B): the resource of a full JID.
pub fn resourceprep(s: &str) -> Result<Cow<'_, str>, PrepError> {
    prepare(s, Profile::Resource)
}

/// Nameprep (RFC 3491): the domain of a JID.
pub fn nameprep(s: &str) -> Result<Cow<'_, str>, PrepError> {
    prepare(s, Profile::Name)
}

/// SASLprep (RFC 4013): a password. Intermediate copies are wiped.
pub fn saslprep(s: &str) -> Result<Zeroizing<String>, PrepError> {
    match prepare(s, Profile::Sasl)? {
        Cow::Borrowed(s) => Ok(Zeroizing::new(s.to_owned())),
        Cow::Owned(s) => Ok(Zeroizing::new(s)),
    }
}

fn prepare(s: &str, profile: Profile) -> Result<Cow<'_, str>, PrepError> {
    let folds_case = matches!(profile, Profile::Node | Profile::Name);
    if s.is_ascii() {
        // No ASCII character is mapped to nothing, changed by NFKC, right-to-left or unassigned.
        if s.chars().any(|c| prohibited(c, profile)) {
            return Err(PrepError::Prohibited);
        }
        return Ok(if folds_case && s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        });
    }

    // Mapping (RFC 3454 §3), then normalisation (§4).
    let mut mapped = Zeroizing::new(String::with_capacity(s.len()));
    for c in s.chars() {
        if profile == Profile::Sasl && in_ranges(NON_ASCII_SPACE, c) {
            mapped.push(' ');
        } else if MAPPED_TO_NOTHING.binary_search(&u32::from(c)).is_ok() {
        } else if folds_case {
            case_fold(c, &mut mapped);
        } else {
            mapped.push(c);
        }
    }
    // Unicode 3.2 is the version RFC 3454 normalises in; a character it does not assign must not
    // reach today's NFKC, which would turn some (Ϲ U+03F9, ᴬ U+1D2C …) into assigned characters
    // that are not even case-folded. The servers' libidn, on Unicode 3.2, leaves them unassigned.
    if mapped.chars().any(|c| in_ranges(UNASSIGNED, c)) {
        return Err(PrepError::Unassigned);
    }
    let normalized = nfkc(&mapped);

    // Prohibited output (§5), bidirectional text (§6), unassigned code points (§7).
    if normalized.chars().any(|c| prohibited(c, profile)) {
        return Err(PrepError::Prohibited);
    }
    if normalized.chars().any(|c| in_ranges(BIDI_R_AL, c)) {
        let first = normalized.chars().next();
        let last = normalized.chars().next_back();
        if normalized.chars().any(|c| in_ranges(BIDI_L, c))
            || !first.is_some_and(|c| in_ranges(BIDI_R_AL, c))
            || !last.is_some_and(|c| in_ranges(BIDI_R_AL, c))
        {
            return Err(PrepError::Bidi);
        }
    }
    if normalized.chars().any(|c| in_ranges(UNASSIGNED, c)) {
        return Err(PrepError::Unassigned);
    }
    Ok(Cow::Owned(normalized.to_string()))
}

fn prohibited(c: char, profile: Profile) -> bool {
    match c {
        // C.1.1
        ' ' => profile == Profile::Node,
        // C.2.1
        '\0'..='\x1f' | '\x7f' => profile != Profile::Name,
        // RFC 6122 A.5: characters with a meaning in a JID.
        '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@' => profile == Profile::Node,
        _ if c.is_ascii() => false,
        _ => in_ranges(PROHIBITED, c),
    }
}

/// Table B.2: case folding for use with NFKC.
fn case_fold(c: char, out: &mut String) {
    let code = u32::from(c);
    if let Some((_, folded)) = CASE_FOLD_MULTI
        .binary_search_by_key(&code, |&(from, _)| from)
        .ok()
        .and_then(|i| CASE_FOLD_MULTI.get(i))
    {
        out.push_str(folded);
        return;
    }
    // The last run starting at or before `c`; runs do not overlap.
    let run = match CASE_FOLD_RUNS.binary_search_by_key(&code, |&(first, ..)| first) {
        Ok(i) => Some(i),
        Err(0) => None,
        Err(i) => Some(i - 1),
    };
    if let Some(&(first, count, stride, offset)) = run.and_then(|i| CASE_FOLD_RUNS.get(i)) {
        let step = code - first;
        let stride = u32::from(stride);
        if step % stride == 0 && step / stride < u32::from(count) {
            if let Some(folded) = code.checked_add_signed(offset).and_then(char::from_u32) {
                out.push(folded);
                return;
            }
        }
    }
    out.push(c);
}

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let code = u32::from(c);
    ranges
        .binary_search_by(|&(first, last)| {
            if last < code {
                std::cmp::Ordering::Less
            } else if first > code {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Unicode normalisation form KC: the browser's own in the web app.
#[cfg(target_arch = "wasm32")]
fn nfkc(s: &str) -> Zeroizing<String> {
    Zeroizing::new(String::from(js_sys::JsString::from(s).normalize("NFKC")))
}

/// Unicode normalisation form KC.
#[cfg(not(target_arch = "wasm32"))]
fn nfkc(s: &str) -> Zeroizing<String> {
    use unicode_normalization::UnicodeNormalization as _;
    Zeroizing::new(s.nfkc().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ours = fn(&str) -> Result<Cow<'_, str>, PrepError>;
    type Theirs = fn(&str) -> Result<Cow<'_, str>, stringprep::Error>;

    fn ours_sasl(s: &str) -> Result<Cow<'_, str>, PrepError> {
        saslprep(s).map(|p| Cow::Owned(p.to_string()))
    }

    const PROFILES: [(&str, Ours, Theirs); 4] = [
        ("nodeprep", nodeprep, stringprep::nodeprep),
        ("resourceprep", resourceprep, stringprep::resourceprep),
        ("nameprep", nameprep, stringprep::nameprep),
        ("saslprep", ours_sasl, stringprep::saslprep),
    ];

    fn same(name: &str, ours: Ours, theirs: Theirs, s: &str) -> Result<(), String> {
        let a = ours(s).ok().map(Cow::into_owned);
        // Prepared is final: preparing again changes nothing (JIDs from the server are prepared
        // again when parsed, and must keep comparing equal).
        if let Some(prepared) = &a {
            let again = ours(prepared).ok().map(Cow::into_owned);
            if again.as_ref() != Some(prepared) {
                return Err(format!(
                    "{name}({s:?}) = {prepared:?} prepares again to {again:?}"
                ));
            }
        }
        let b = theirs(s).ok().map(Cow::into_owned);
        // The crate lets characters Unicode 3.2 does not assign through today's NFKC; we refuse.
        let refused_unassigned = a.is_none() && s.chars().any(|c| in_ranges(UNASSIGNED, c));
        if a == b || refused_unassigned {
            Ok(())
        } else {
            Err(format!(
                "{name}({s:?} = {:x?}): ours {a:?}, stringprep crate {b:?}",
                s.chars().map(u32::from).collect::<Vec<_>>()
            ))
        }
    }

    /// Every code point alone, and inside text (a lone combining mark or bidi character behaves
    /// differently at the edges), through all four profiles, against the `stringprep` crate —
    /// except where the crate accepts a code point Unicode 3.2 does not assign.
    #[test]
    fn every_code_point_matches_the_stringprep_crate() {
        let mut differences = Vec::new();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            for (name, ours, theirs) in PROFILES {
                for s in [c.to_string(), format!("a{c}b")] {
                    if let Err(e) = same(name, ours, theirs, &s) {
                        differences.push(e);
                    }
                }
            }
        }
        assert!(
            differences.is_empty(),
            "{} differences, first: {:#?}",
            differences.len(),
            &differences[..differences.len().min(20)]
        );
    }

    #[test]
    fn known_answers() {
        // RFC 3454 B.2 folds ß to "ss" and the Kelvin sign to k; NFKC composes u + ¨.
        assert_eq!(nodeprep("Stra\u{df}E").unwrap(), "strasse");
        assert_eq!(nodeprep("\u{212a}ing").unwrap(), "king");
        assert_eq!(nodeprep("mu\u{308}ller").unwrap(), "m\u{fc}ller");
        assert_eq!(nodeprep("M\u{dc}LLER").unwrap(), "m\u{fc}ller");
        // Dotless ı stays itself: it is not i.
        assert_eq!(nodeprep("\u{131}").unwrap(), "\u{131}");
        assert_eq!(resourceprep("Phone \u{2163}").unwrap(), "Phone IV");
        assert_eq!(nameprep("EXAMPLE.com").unwrap(), "example.com");
        assert_eq!(
            nameprep("b\u{fc}cher.example").unwrap(),
            "b\u{fc}cher.example"
        );
        // RFC 4013 §3 examples.
        assert_eq!(&*saslprep("I\u{ad}X").unwrap(), "IX");
        assert_eq!(&*saslprep("user").unwrap(), "user");
        assert_eq!(&*saslprep("USER").unwrap(), "USER");
        assert_eq!(&*saslprep("\u{aa}").unwrap(), "a");
        assert_eq!(&*saslprep("\u{2168}").unwrap(), "IX");
        assert_eq!(saslprep("\u{7}"), Err(PrepError::Prohibited));
        assert_eq!(saslprep("\u{627}1"), Err(PrepError::Bidi));
        // Non-ASCII space becomes a space in passwords.
        assert_eq!(&*saslprep("a\u{a0}b").unwrap(), "a b");
        assert_eq!(nodeprep("a b"), Err(PrepError::Prohibited));
        assert_eq!(
            nodeprep("a\u{ff0f}b"),
            Err(PrepError::Prohibited),
            "fullwidth solidus is /"
        );
        assert_eq!(resourceprep("\u{221}"), Err(PrepError::Unassigned));
        assert_eq!(
            nodeprep("\u{3f9}"),
            Err(PrepError::Unassigned),
            "NFKC would make it Σ"
        );
        assert_eq!(nodeprep("\u{5d0}\u{5d1}").unwrap(), "\u{5d0}\u{5d1}");
        assert_eq!(nodeprep("\u{5d0}a\u{5d1}"), Err(PrepError::Bidi));
    }
}
