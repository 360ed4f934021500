//! XMPP addresses (RFC 6122): `node@domain/resource`, prepared so that two spellings of one
//! address compare equal.
//!
//! Preparation is what Prosody does (`util.jid.prep`): Nodeprep for the node, Nameprep for the
//! domain after dropping a final root dot, Resourceprep for the resource ([`prep`]), each part at
//! most 1023 bytes. Domains are further checked for characters a host name cannot carry (the URL
//! standard's forbidden host code points) and empty labels; IP literals are kept as they are.

mod prep;
mod tables;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::str::FromStr;

pub use prep::{nameprep, nodeprep, resourceprep, saslprep, PrepError};

/// The longest a prepared node, domain or resource may be (RFC 6122 §2.2–2.4).
const MAX_PART_BYTES: usize = 1023;

/// Why a string is not a JID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// Nothing where the domain should be.
    #[error("the address has no domain")]
    DomainEmpty,
    /// `@` with nothing before it.
    #[error("the part before @ is empty")]
    NodeEmpty,
    /// `/` with nothing after it.
    #[error("the part after / is empty")]
    ResourceEmpty,
    /// A part longer than RFC 6122 allows; names the part.
    #[error("the {0} is longer than 1023 bytes")]
    TooLong(&'static str),
    /// The node fails Nodeprep.
    #[error("the name before @ {0}")]
    Node(PrepError),
    /// The domain fails Nameprep.
    #[error("the domain {0}")]
    Domain(PrepError),
    /// The domain has characters no host name carries, or an empty label.
    #[error("the domain is not a valid host name")]
    DomainSyntax,
    /// The resource fails Resourceprep.
    #[error("the resource {0}")]
    Resource(PrepError),
    /// A resource where only a bare JID may be.
    #[error("a bare address has no /resource")]
    ResourceInBareJid,
    /// No resource where a full JID is needed.
    #[error("a full address needs a /resource")]
    ResourceMissing,
}

/// A prepared JID, bare or full.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    normalized: String,
    /// Byte index of the `@` between node and domain.
    at: Option<usize>,
    /// Byte index of the `/` before the resource.
    slash: Option<usize>,
}

impl Jid {
    /// Parses and prepares `s`.
    pub fn new(s: &str) -> Result<Self, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((rest, resource)) => (rest, Some(resource)),
            None => (s, None),
        };
        let (node, domain) = match rest.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, rest),
        };

        let mut normalized = String::with_capacity(s.len());
        let mut at = None;
        if let Some(node) = node {
            let node = nodeprep(node).map_err(JidError::Node)?;
            // After preparing, not before: nodeprep maps characters such as the soft hyphen
            // to nothing, and "\u{ad}@b" must not become the node-less "@b" (RFC 7622 §3.3.1).
            if node.is_empty() {
                return Err(JidError::NodeEmpty);
            }
            check_length(&node, "name before @")?;
            normalized.push_str(&node);
            at = Some(normalized.len());
            normalized.push('@');
        }
        normalized.push_str(&prepare_domain(domain)?);
        let mut slash = None;
        if let Some(resource) = resource {
            let resource = resourceprep(resource).map_err(JidError::Resource)?;
            // Likewise: a resource of only ignorable characters is empty (RFC 7622 §3.4.1).
            if resource.is_empty() {
                return Err(JidError::ResourceEmpty);
            }
            check_length(&resource, "resource")?;
            slash = Some(normalized.len());
            normalized.push('/');
            normalized.push_str(&resource);
        }
        Ok(Self {
            normalized,
            at,
            slash,
        })
    }

    /// The whole address, prepared.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The part before `@`, if any.
    pub fn node(&self) -> Option<&str> {
        self.at.map(|at| &self.normalized[..at])
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        let start = self.at.map_or(0, |at| at + 1);
        let end = self.slash.unwrap_or(self.normalized.len());
        &self.normalized[start..end]
    }

    /// The part after `/`, if any.
    pub fn resource(&self) -> Option<&str> {
        self.slash.map(|slash| &self.normalized[slash + 1..])
    }

    /// The address without its resource.
    pub fn to_bare(&self) -> BareJid {
        let end = self.slash.unwrap_or(self.normalized.len());
        BareJid(Jid {
            normalized: self.normalized[..end].to_owned(),
            at: self.at,
            slash: None,
        })
    }
}

fn check_length(part: &str, what: &'static str) -> Result<(), JidError> {
    if part.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(what));
    }
    Ok(())
}

fn prepare_domain(domain: &str) -> Result<String, JidError> {
    if domain.is_empty() {
        return Err(JidError::DomainEmpty);
    }
    if domain.parse::<Ipv4Addr>().is_ok()
        || domain
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
            .is_some_and(|d| d.parse::<Ipv6Addr>().is_ok())
    {
        return Ok(domain.to_owned());
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let prepared = nameprep(domain).map_err(JidError::Domain)?;
    // What no host name can carry (the URL standard's forbidden domain code points), and empty
    // labels; Nameprep itself allows them.
    let forbidden = |c: char| {
        c.is_ascii_control()
            || matches!(
                c,
                ' ' | '#' | '%' | '/' | ':' | '<' | '>' | '?' | '@' | '[' | '\\' | ']' | '^' | '|'
            )
    };
    if prepared.is_empty()
        || prepared.chars().any(forbidden)
        || prepared.split('.').any(str::is_empty)
    {
        return Err(JidError::DomainSyntax);
    }
    check_length(&prepared, "domain")?;
    Ok(prepared.into_owned())
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, JidError> {
        Self::new(s)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({:?})", self.normalized)
    }
}

/// A JID without a resource: an account or a server.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BareJid(Jid);

/// A JID with a resource: one connected client.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullJid(Jid);

impl BareJid {
    /// Parses and prepares `s`, which must not have a resource.
    pub fn new(s: &str) -> Result<Self, JidError> {
        let jid = Jid::new(s)?;
        if jid.slash.is_some() {
            return Err(JidError::ResourceInBareJid);
        }
        Ok(Self(jid))
    }
}

impl FullJid {
    /// Parses and prepares `s`, which must have a resource.
    pub fn new(s: &str) -> Result<Self, JidError> {
        let jid = Jid::new(s)?;
        if jid.slash.is_none() {
            return Err(JidError::ResourceMissing);
        }
        Ok(Self(jid))
    }
}

macro_rules! specific_jid {
    ($name:ident) => {
        impl Deref for $name {
            type Target = Jid;
            fn deref(&self) -> &Jid {
                &self.0
            }
        }
        impl From<$name> for Jid {
            fn from(jid: $name) -> Jid {
                jid.0
            }
        }
        impl FromStr for $name {
            type Err = JidError;
            fn from_str(s: &str) -> Result<Self, JidError> {
                Self::new(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.normalized)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0.normalized)
            }
        }
        impl PartialEq<Jid> for $name {
            fn eq(&self, other: &Jid) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<$name> for Jid {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}
specific_jid!(BareJid);
specific_jid!(FullJid);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let jid = Jid::new("Alice@Example.COM/Phone").unwrap();
        assert_eq!(jid.as_str(), "alice@example.com/Phone");
        assert_eq!(jid.node(), Some("alice"));
        assert_eq!(jid.domain(), "example.com");
        assert_eq!(jid.resource(), Some("Phone"));
        assert_eq!(jid.to_bare().as_str(), "alice@example.com");
        assert_eq!(jid.to_bare().to_bare(), jid.to_bare());

        let server = Jid::new("example.com.").unwrap();
        assert_eq!(
            (server.node(), server.domain(), server.resource()),
            (None, "example.com", None)
        );
        // A resource may hold @ and /: only the first / separates.
        let odd = Jid::new("a@b/c@d/e").unwrap();
        assert_eq!(
            (odd.node(), odd.domain(), odd.resource()),
            (Some("a"), "b", Some("c@d/e"))
        );
        let no_node = Jid::new("b/c@d").unwrap();
        assert_eq!((no_node.node(), no_node.domain()), (None, "b"));
        assert_eq!(Jid::new("127.0.0.1").unwrap().domain(), "127.0.0.1");
        assert_eq!(Jid::new("a@[::1]/r").unwrap().domain(), "[::1]");
    }

    #[test]
    fn bare_and_full() {
        assert_eq!(BareJid::new("a@b/c"), Err(JidError::ResourceInBareJid));
        assert_eq!(FullJid::new("a@b"), Err(JidError::ResourceMissing));
        let full: FullJid = "a@B/c".parse().unwrap();
        assert_eq!(full.to_string(), "a@b/c");
        assert_eq!(full.resource(), Some("c"));
        let bare: BareJid = "A@b".parse().unwrap();
        assert_eq!(full.to_bare(), bare);
        assert_eq!(format!("{bare:?}"), "BareJid(\"a@b\")");
        assert_eq!(Jid::from(bare.clone()), bare);
    }

    #[test]
    fn refusals() {
        for (s, e) in [
            ("", JidError::DomainEmpty),
            ("@b", JidError::NodeEmpty),
            ("\u{ad}@J", JidError::NodeEmpty),
            ("a@b/\u{200b}", JidError::ResourceEmpty),
            ("a@", JidError::DomainEmpty),
            ("a@b/", JidError::ResourceEmpty),
            ("a b@c", JidError::Node(PrepError::Prohibited)),
            ("a@b c", JidError::DomainSyntax),
            ("a@b..c", JidError::DomainSyntax),
            ("a@b:5222", JidError::DomainSyntax),
            ("a@\u{200b}", JidError::DomainSyntax),
            ("a@b/\u{7}", JidError::Resource(PrepError::Prohibited)),
            ("a@\u{5d0}x", JidError::Domain(PrepError::Bidi)),
        ] {
            assert_eq!(Jid::new(s), Err(e), "{s:?}");
        }
        let long = "x".repeat(1024);
        assert_eq!(
            Jid::new(&format!("{long}@b")),
            Err(JidError::TooLong("name before @"))
        );
        assert_eq!(
            Jid::new(&format!("a@b/{long}")),
            Err(JidError::TooLong("resource"))
        );
        assert!(Jid::new(&format!("{}@b", "x".repeat(1023))).is_ok());
    }

    /// Our addresses are the `jid` crate's wherever both accept one (the crate also runs UTS 46
    /// on the domain, which refuses a few more, and keeps a final root dot that RFC 7622 §3.2
    /// and Prosody drop).
    #[test]
    fn agrees_with_the_jid_crate() {
        let samples = [
            "alice@example.com",
            "Alice@Example.com/Res",
            "M\u{dc}LLER@b\u{fc}cher.example/Ger\u{e4}t",
            "mu\u{308}ller@example.com",
            "stra\u{df}e@example.com",
            "\u{212a}elvin@EXAMPLE.com",
            "a@b/ x ",
            "\u{ff21}\u{ff22}@example.com",
            "user@xn--bcher-kva.example",
            "a@b/c/d",
            "\u{5d0}\u{5d1}@example.com",
        ];
        for s in samples {
            let ours = Jid::new(s).map(|j| j.to_string()).ok();
            let theirs = s.parse::<jid::Jid>().map(|j| j.to_string()).ok();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }
}
