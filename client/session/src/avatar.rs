//! Contacts' pictures (XEP-0084 User Avatar), sans-IO, layered over the session as OMEMO is.
//!
//! We advertise `urn:xmpp:avatar:metadata+notify`, so the server tells us (XEP-0163) which
//! picture each contact publishes, and again whenever it changes. A picture announced is
//! fetched from the contact's data node by its id, which is its SHA-1: the bytes must match
//! it, be no bigger than [`MAX_AVATAR_BYTES`], and be of a raster type browsers decode in an
//! `<img>` ([`IMAGE_TYPES`]; no SVG). Pictures hosted elsewhere (`url`) are not fetched: that
//! would tell a third party when we look at the contact. At most [`MAX_FETCHES`] fetches are
//! in flight; the rest wait, newest announcement first.

use std::collections::{HashMap, HashSet, VecDeque};

use base64::Engine as _;
use minidom::Element;
use sha1::{Digest as _, Sha1};

use crate::{BareJid, Event, RequestId, Session};

/// The metadata node (what picture, announced by notification).
pub const METADATA_NODE: &str = "urn:xmpp:avatar:metadata";
/// The data node (the picture's bytes, base64, one item per picture, named by its SHA-1).
pub const DATA_NODE: &str = "urn:xmpp:avatar:data";
/// What we advertise to be notified of contacts' metadata.
pub const METADATA_NOTIFY: &str = "urn:xmpp:avatar:metadata+notify";
/// The largest picture fetched (XEP-0084 suggests small ones; clients publish 10–100 KB).
pub const MAX_AVATAR_BYTES: usize = 128 * 1024;
/// The picture types taken.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/webp", "image/gif"];
/// Fetches in flight at once.
pub const MAX_FETCHES: usize = 4;
/// Contacts whose announcement is remembered (the session's roster bound).
pub const MAX_KNOWN: usize = 10_000;

/// A contact's picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    /// Its id: the SHA-1 of `data`, in hex.
    pub id: String,
    /// Its type, one of [`IMAGE_TYPES`].
    pub mime: &'static str,
    /// The image.
    pub data: Vec<u8>,
}

/// What the avatar layer tells the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvatarEvent {
    /// `jid`'s picture is now `avatar` (`None`: they have none, or none we can show).
    Changed {
        /// Whose.
        jid: BareJid,
        /// The picture.
        avatar: Option<Avatar>,
    },
    /// Our picture is published (or taken down); our own notification follows.
    Published,
    /// Publishing our picture failed (the server's condition).
    PublishFailed {
        /// E.g. `not-authorized`, `not-online`.
        condition: String,
    },
}

/// Our pictures' nodes: readable by those who may see our presence (our contacts), not by
/// everyone; one item kept.
const PUBLISH_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#access_model", "presence"),
    ("pubsub#max_items", "1"),
];

/// Our picture being published: the data item first, then the metadata that announces it.
#[derive(Debug)]
enum Publishing {
    Data(RequestId, Element),
    Metadata(RequestId),
}

/// The data item and the metadata announcing `data`, a picture of ours (`mime`, `width` ×
/// `height` pixels); named by its SHA-1, as contacts will check.
pub fn prepare(
    data: &[u8],
    mime: &'static str,
    width: u32,
    height: u32,
) -> Result<(String, Element, Element), AvatarError> {
    if data.is_empty() || data.len() > MAX_AVATAR_BYTES || !IMAGE_TYPES.contains(&mime) {
        return Err(AvatarError::Malformed);
    }
    let id = sha1_hex(data);
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let data_item = Element::builder("data", DATA_NODE).append(encoded).build();
    let metadata = Element::builder("metadata", METADATA_NODE)
        .append(
            Element::builder("info", METADATA_NODE)
                .attr(rxml::xml_ncname!("bytes").into(), data.len().to_string())
                .attr(rxml::xml_ncname!("id").into(), id.as_str())
                .attr(rxml::xml_ncname!("type").into(), mime)
                .attr(rxml::xml_ncname!("width").into(), width.to_string())
                .attr(rxml::xml_ncname!("height").into(), height.to_string())
                .build(),
        )
        .build();
    Ok((id, data_item, metadata))
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .fold(String::with_capacity(40), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A picture a metadata item announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The id (SHA-1 hex) of its data item.
    pub id: String,
    /// Its type.
    pub mime: &'static str,
}

/// Why a picture was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvatarError {
    /// No data item of that id.
    #[error("no picture of that id")]
    Missing,
    /// Not base64, or too big.
    #[error("not a picture we take (bad encoding or too big)")]
    Malformed,
    /// The bytes are not those the id names.
    #[error("the picture does not match its id")]
    WrongHash,
}

/// Reads a metadata payload: the first announced picture we can show, or `None` when the
/// contact has none (an empty `<metadata/>` means they removed it) or none of a type, size and
/// place we take. `Err(())` for what is not metadata at all.
#[allow(clippy::result_unit_err)]
pub fn parse_metadata(payload: &Element) -> Result<Option<Announced>, ()> {
    if !payload.is("metadata", METADATA_NODE) {
        return Err(());
    }
    Ok(payload
        .children()
        .filter(|info| info.is("info", METADATA_NODE))
        .find_map(|info| {
            let id = info.attr("id")?;
            let mime = IMAGE_TYPES.into_iter().find(|t| {
                info.attr("type")
                    .is_some_and(|given| given.eq_ignore_ascii_case(t))
            })?;
            let bytes: usize = info.attr("bytes")?.parse().ok()?;
            let usable = info.attr("url").is_none()
                && bytes <= MAX_AVATAR_BYTES
                && id.len() == 40
                && id.bytes().all(|b| b.is_ascii_hexdigit());
            usable.then(|| Announced {
                id: id.to_ascii_lowercase(),
                mime,
            })
        }))
}

/// Reads the data item `announced` names among `items` of a data node.
pub fn parse_data(items: &[crate::PepItem], announced: &Announced) -> Result<Avatar, AvatarError> {
    let payload = items
        .iter()
        .find(|item| {
            item.id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(&announced.id))
        })
        .and_then(|item| item.payload.as_ref())
        .filter(|p| p.is("data", DATA_NODE))
        .ok_or(AvatarError::Missing)?;
    // base64 of MAX_AVATAR_BYTES, with room for the line breaks some clients add.
    let text = payload.text();
    if text.len() > MAX_AVATAR_BYTES / 3 * 4 + 4096 {
        return Err(AvatarError::Malformed);
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| AvatarError::Malformed)?;
    if data.is_empty() || data.len() > MAX_AVATAR_BYTES {
        return Err(AvatarError::Malformed);
    }
    if sha1_hex(&data) != announced.id {
        return Err(AvatarError::WrongHash);
    }
    Ok(Avatar {
        id: announced.id.clone(),
        mime: announced.mime,
        data,
    })
}

/// Contacts' pictures: takes metadata notifications and the answers to its fetches from the
/// session's events, and gives [`AvatarEvent`]s.
#[derive(Debug, Default)]
pub struct Avatars {
    /// The picture each contact announced last (`None`: none).
    announced: HashMap<BareJid, Option<Announced>>,
    /// Fetches in flight.
    fetching: HashMap<RequestId, (BareJid, Announced)>,
    /// Contacts whose picture is still to fetch, oldest first, and the same as a set (a roster
    /// of thousands announces at once: no linear search per announcement).
    waiting: VecDeque<BareJid>,
    queued: HashSet<BareJid>,
    /// Our own picture on its way.
    publishing: Option<Publishing>,
    events: VecDeque<AvatarEvent>,
}

impl Avatars {
    /// A new layer; nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Advertises `urn:xmpp:avatar:metadata+notify`. Call before connecting.
    pub fn attach(&self, session: &mut Session) {
        session.advertise_feature(METADATA_NOTIFY);
    }

    /// The next event for the UI.
    pub fn poll_event(&mut self) -> Option<AvatarEvent> {
        self.events.pop_front()
    }

    /// Feeds one session event. Returns it back unless it was this layer's.
    pub fn handle_event(&mut self, session: &mut Session, event: Event) -> Option<Event> {
        match event {
            Event::PepNotification {
                from, node, items, ..
            } if node == METADATA_NODE => {
                // The last item is the current one; a retraction or an empty node leaves the
                // contact without a picture.
                let announced = items
                    .last()
                    .and_then(|item| item.payload.as_ref())
                    .and_then(|p| parse_metadata(p).ok())
                    .flatten();
                self.on_announced(session, from, announced);
                None
            }
            Event::PepItems {
                request,
                from,
                node,
                items,
            } => match self.fetching.remove(&request) {
                Some((jid, announced)) => {
                    // Still what the contact announces? (A newer one may have come since.)
                    if self.announced.get(&jid) == Some(&Some(announced.clone())) {
                        let avatar = parse_data(&items, &announced).ok();
                        self.events.push_back(AvatarEvent::Changed { jid, avatar });
                    }
                    self.fetch_next(session);
                    None
                }
                None => Some(Event::PepItems {
                    request,
                    from,
                    node,
                    items,
                }),
            },
            Event::RequestDone { request } if self.is_publishing(request) => {
                match self.publishing.take() {
                    Some(Publishing::Data(_, metadata)) => {
                        match session.pep_publish(
                            METADATA_NODE,
                            &item_id(&metadata),
                            metadata,
                            PUBLISH_OPTIONS,
                        ) {
                            Ok(request) => self.publishing = Some(Publishing::Metadata(request)),
                            Err(e) => self.events.push_back(AvatarEvent::PublishFailed {
                                condition: e.to_string(),
                            }),
                        }
                    }
                    _ => self.events.push_back(AvatarEvent::Published),
                }
                None
            }
            Event::RequestFailed { request, condition } if self.is_publishing(request) => {
                self.publishing = None;
                self.events
                    .push_back(AvatarEvent::PublishFailed { condition });
                None
            }
            Event::RequestFailed { request, condition } => match self.fetching.remove(&request) {
                Some(_) => {
                    self.fetch_next(session);
                    None
                }
                None => Some(Event::RequestFailed { request, condition }),
            },
            // A new stream (not a resumed one) forgets the fetches of the old one; the server
            // announces every picture again.
            Event::Online { resumed: false, .. } => {
                self.fetching.clear();
                self.waiting.clear();
                self.queued.clear();
                self.announced.clear();
                Some(event)
            }
            other => Some(other),
        }
    }

    /// Publishes `data` as our picture: its data item, then (once the server has it) the
    /// metadata that announces it to our contacts. The outcome comes as
    /// [`AvatarEvent::Published`] or [`AvatarEvent::PublishFailed`].
    pub fn publish(
        &mut self,
        session: &mut Session,
        data: &[u8],
        mime: &'static str,
        width: u32,
        height: u32,
    ) -> Result<(), AvatarError> {
        let (id, data_item, metadata) = prepare(data, mime, width, height)?;
        match session.pep_publish(DATA_NODE, &id, data_item, PUBLISH_OPTIONS) {
            Ok(request) => self.publishing = Some(Publishing::Data(request, metadata)),
            Err(e) => self.events.push_back(AvatarEvent::PublishFailed {
                condition: e.to_string(),
            }),
        }
        Ok(())
    }

    /// Takes our picture down: an empty metadata item (XEP-0084 §4.2), which contacts read as
    /// "no picture".
    pub fn unpublish(&mut self, session: &mut Session) {
        let empty = Element::bare("metadata", METADATA_NODE);
        match session.pep_publish(METADATA_NODE, "none", empty, PUBLISH_OPTIONS) {
            Ok(request) => self.publishing = Some(Publishing::Metadata(request)),
            Err(e) => self.events.push_back(AvatarEvent::PublishFailed {
                condition: e.to_string(),
            }),
        }
    }

    fn is_publishing(&self, request: RequestId) -> bool {
        matches!(
            self.publishing,
            Some(Publishing::Data(r, _) | Publishing::Metadata(r)) if r == request
        )
    }

    fn on_announced(&mut self, session: &mut Session, jid: BareJid, announced: Option<Announced>) {
        if self.announced.get(&jid) == Some(&announced) {
            return;
        }
        if !self.announced.contains_key(&jid) && self.announced.len() >= MAX_KNOWN {
            return;
        }
        self.announced.insert(jid.clone(), announced.clone());
        match announced {
            None => self
                .events
                .push_back(AvatarEvent::Changed { jid, avatar: None }),
            Some(_) => {
                if self.queued.insert(jid.clone()) {
                    self.waiting.push_back(jid);
                }
                self.fetch_next(session);
            }
        }
    }

    /// Starts waiting fetches while fewer than [`MAX_FETCHES`] are in flight.
    fn fetch_next(&mut self, session: &mut Session) {
        while self.fetching.len() < MAX_FETCHES {
            let Some(jid) = self.waiting.pop_front() else {
                return;
            };
            self.queued.remove(&jid);
            let Some(Some(announced)) = self.announced.get(&jid).cloned() else {
                continue;
            };
            if let Ok(request) = session.pep_fetch_item(&jid, DATA_NODE, &announced.id) {
                self.fetching.insert(request, (jid, announced));
            }
        }
    }
}

/// The item id of a metadata payload: its picture's id (XEP-0084 §4.2).
fn item_id(metadata: &Element) -> String {
    metadata
        .get_child("info", METADATA_NODE)
        .and_then(|info| info.attr("id"))
        .unwrap_or("none")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PepItem;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really a picture, but bytes";

    fn sha1_hex(data: &[u8]) -> String {
        Sha1::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn metadata(infos: &str) -> Element {
        format!("<metadata xmlns='urn:xmpp:avatar:metadata'>{infos}</metadata>")
            .parse()
            .unwrap()
    }

    fn data_item(id: &str, base64: &str) -> PepItem {
        PepItem {
            id: Some(id.to_owned()),
            payload: Some(
                format!("<data xmlns='urn:xmpp:avatar:data'>{base64}</data>")
                    .parse()
                    .unwrap(),
            ),
        }
    }

    #[test]
    fn metadata_announces_the_first_picture_we_take() {
        let id = sha1_hex(PNG);
        let announced = parse_metadata(&metadata(&format!(
            "<info bytes='99999999' id='{id}' type='image/png'/>\
             <info bytes='100' id='{id}' type='image/svg+xml'/>\
             <info bytes='100' id='{id}' type='image/png' url='https://elsewhere.example/a.png'/>\
             <info bytes='{}' id='{}' type='image/PNG' width='64' height='64'/>",
            PNG.len(),
            id.to_uppercase()
        )))
        .unwrap();
        assert_eq!(
            announced,
            Some(Announced {
                id: id.clone(),
                mime: "image/png"
            })
        );
        assert_eq!(parse_metadata(&metadata("")).unwrap(), None, "removed");
        assert_eq!(
            parse_metadata(&metadata(
                "<info bytes='10' id='not-a-hash' type='image/png'/>"
            ))
            .unwrap(),
            None
        );
        let other: Element = "<devices xmlns='urn:example'/>".parse().unwrap();
        assert!(parse_metadata(&other).is_err());
    }

    #[test]
    fn data_must_be_the_picture_its_id_names() {
        let id = sha1_hex(PNG);
        let announced = Announced {
            id: id.clone(),
            mime: "image/png",
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
        // Line breaks in the base64, as some clients send it.
        let wrapped = format!("{}\n{}", &b64[..10], &b64[10..]);
        let avatar = parse_data(
            &[data_item("other", &b64), data_item(&id, &wrapped)],
            &announced,
        )
        .unwrap();
        assert_eq!(avatar.data, PNG);
        assert_eq!(
            parse_data(&[data_item("other", &b64)], &announced),
            Err(AvatarError::Missing)
        );
        assert_eq!(
            parse_data(&[data_item(&id, "!!not base64!!")], &announced),
            Err(AvatarError::Malformed)
        );
        let swapped = base64::engine::general_purpose::STANDARD.encode(b"another picture");
        assert_eq!(
            parse_data(&[data_item(&id, &swapped)], &announced),
            Err(AvatarError::WrongHash)
        );
        let huge =
            base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_AVATAR_BYTES + 1]);
        assert_eq!(
            parse_data(&[data_item(&id, &huge)], &announced),
            Err(AvatarError::Malformed)
        );
    }
}
