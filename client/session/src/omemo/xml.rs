//! OMEMO 0.3 XML (`eu.siacs.conversations.axolotl`): device lists, bundles and the
//! `<encrypted/>` message element, via `xmpp_parsers::legacy_omemo` (PROTOCOLS.md §3).

use minidom::Element;
use sotto_omemo::account::{Bundle, RemoteBundle};
use xmpp_parsers::legacy_omemo as lo;

use crate::ns;

/// The OMEMO 0.3 namespace.
pub const NS: &str = "eu.siacs.conversations.axolotl";
/// The PEP node of device lists.
pub const DEVICE_LIST_NODE: &str = "eu.siacs.conversations.axolotl.devicelist";
/// The feature that asks for device-list notifications (XEP-0163 `+notify`).
pub const DEVICE_LIST_NOTIFY: &str = "eu.siacs.conversations.axolotl.devicelist+notify";
/// The prefix of per-device bundle nodes.
pub const BUNDLE_NODE_PREFIX: &str = "eu.siacs.conversations.axolotl.bundles:";
/// The item id of both nodes.
pub const CURRENT: &str = "current";
/// The body shown by clients without OMEMO (as Conversations sends it).
pub const FALLBACK_BODY: &str = "I sent you an OMEMO encrypted message but your client doesn\u{2019}t seem to support that. Find more information on https://conversations.im/omemo";
/// XEP-0380 (explicit message encryption).
const EME: &str = "urn:xmpp:eme:0";
/// Most device ids accepted from one device list.
pub const MAX_DEVICES_PER_LIST: usize = 64;
/// Most `<key/>` elements read from one message.
pub const MAX_KEYS_PER_MESSAGE: usize = 256;

/// The bundle node of device `id`.
pub fn bundle_node(id: u32) -> String {
    format!("{BUNDLE_NODE_PREFIX}{id}")
}

/// Why an OMEMO element was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// The element is not what it should be (wrong name, namespace, missing or bad part).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The bundle's keys or signature are invalid.
    #[error("invalid bundle: {0}")]
    InvalidBundle(#[from] sotto_omemo::account::BundleError),
}

/// Parses a device list; ids 0 and beyond 2³¹−1 are skipped, duplicates removed, at most
/// [`MAX_DEVICES_PER_LIST`] kept.
pub fn parse_device_list(element: &Element) -> Result<Vec<u32>, XmlError> {
    let list = lo::DeviceList::try_from(element.clone())
        .map_err(|_| XmlError::Malformed("device list"))?;
    let mut ids: Vec<u32> = Vec::new();
    for device in list.devices {
        if device.id == 0 || device.id > 0x7FFF_FFFF || ids.contains(&device.id) {
            continue;
        }
        if ids.len() >= MAX_DEVICES_PER_LIST {
            break;
        }
        ids.push(device.id);
    }
    Ok(ids)
}

/// Builds a device list.
pub fn device_list(ids: &[u32]) -> Element {
    lo::DeviceList {
        devices: ids.iter().map(|&id| lo::Device { id }).collect(),
    }
    .into()
}

/// Builds our bundle element.
pub fn bundle(bundle: &Bundle) -> Element {
    lo::Bundle {
        signed_pre_key_public: Some(lo::SignedPreKeyPublic {
            signed_pre_key_id: Some(bundle.signed_pre_key_id()),
            data: bundle.signed_pre_key().to_bytes().to_vec(),
        }),
        signed_pre_key_signature: Some(lo::SignedPreKeySignature {
            data: bundle.signed_pre_key_signature().to_vec(),
        }),
        identity_key: Some(lo::IdentityKey {
            data: bundle.identity_key().to_bytes().to_vec(),
        }),
        prekeys: Some(lo::Prekeys {
            keys: bundle
                .pre_keys()
                .iter()
                .map(|(id, key)| lo::PreKeyPublic {
                    pre_key_id: *id,
                    data: key.to_bytes().to_vec(),
                })
                .collect(),
        }),
    }
    .into()
}

/// Parses and validates (signature included) a contact's bundle.
pub fn parse_bundle(element: &Element) -> Result<RemoteBundle, XmlError> {
    let parsed =
        lo::Bundle::try_from(element.clone()).map_err(|_| XmlError::Malformed("bundle"))?;
    let spk = parsed
        .signed_pre_key_public
        .ok_or(XmlError::Malformed("bundle (signed prekey)"))?;
    let signature = parsed
        .signed_pre_key_signature
        .ok_or(XmlError::Malformed("bundle (signature)"))?;
    let identity = parsed
        .identity_key
        .ok_or(XmlError::Malformed("bundle (identity key)"))?;
    let pre_keys = parsed.prekeys.map(|p| p.keys).unwrap_or_default();
    Ok(RemoteBundle::new(
        &identity.data,
        spk.signed_pre_key_id.unwrap_or(0),
        &spk.data,
        &signature.data,
        pre_keys.into_iter().map(|k| (k.pre_key_id, k.data)),
    )?)
}

/// One `<key/>` of a message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    /// The recipient device.
    pub rid: u32,
    /// Whether it is a `PreKeySignalMessage`.
    pub prekey: bool,
    /// The serialized Signal message.
    pub data: Vec<u8>,
}

/// A parsed `<encrypted/>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedElement {
    /// The sender device.
    pub sid: u32,
    /// The keys, one per recipient device.
    pub keys: Vec<KeyElement>,
    /// The payload IV.
    pub iv: Vec<u8>,
    /// The payload (GCM ciphertext without tag); `None` for key-transport messages.
    pub payload: Option<Vec<u8>>,
}

/// Parses the `<encrypted/>` child of a message, if there is one.
pub fn parse_encrypted(message: &Element) -> Option<Result<EncryptedElement, XmlError>> {
    let element = message.get_child("encrypted", NS)?;
    Some(parse_encrypted_element(element))
}

fn parse_encrypted_element(element: &Element) -> Result<EncryptedElement, XmlError> {
    // Parsed by hand rather than via `lo::Encrypted`: old senders write `prekey='1'`, and
    // xmpp-parsers rejects elements with attributes it does not know.
    let header = element
        .get_child("header", NS)
        .ok_or(XmlError::Malformed("encrypted (header)"))?;
    let sid = header
        .attr("sid")
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or(XmlError::Malformed("encrypted (sid)"))?;
    let b64 = |e: &Element| {
        let text: String = e.text().chars().filter(|c| !c.is_whitespace()).collect();
        base64_decode(&text)
    };
    let mut keys = Vec::new();
    for key in header
        .children()
        .filter(|c| c.is("key", NS))
        .take(MAX_KEYS_PER_MESSAGE)
    {
        let Some(rid) = key.attr("rid").and_then(|r| r.parse::<u32>().ok()) else {
            continue;
        };
        let Some(data) = b64(key) else {
            continue;
        };
        let prekey = matches!(key.attr("prekey"), Some("true" | "1"));
        keys.push(KeyElement { rid, prekey, data });
    }
    let iv = header
        .get_child("iv", NS)
        .and_then(b64)
        .ok_or(XmlError::Malformed("encrypted (iv)"))?;
    let payload = match element.get_child("payload", NS) {
        Some(p) => Some(b64(p).ok_or(XmlError::Malformed("encrypted (payload)"))?),
        None => None,
    };
    Ok(EncryptedElement {
        sid,
        keys,
        iv,
        payload,
    })
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Builds the `<encrypted/>` element.
pub fn encrypted(message: &EncryptedElement) -> Element {
    lo::Encrypted {
        header: lo::Header {
            sid: message.sid,
            keys: message
                .keys
                .iter()
                .map(|k| lo::Key {
                    rid: k.rid,
                    prekey: k.prekey,
                    data: k.data.clone(),
                })
                .collect(),
            iv: lo::IV {
                data: message.iv.clone(),
            },
        },
        payload: message
            .payload
            .as_ref()
            .map(|data| lo::Payload { data: data.clone() }),
    }
    .into()
}

/// Builds a whole OMEMO chat message: fallback body (when it has a payload), `<encrypted/>`,
/// EME and the store hint (PROTOCOLS.md §3).
pub fn message(to: &str, id: &str, encrypted_element: &EncryptedElement) -> Element {
    let mut builder = Element::builder("message", ns::CLIENT)
        .attr(rxml::xml_ncname!("to").into(), to)
        .attr(rxml::xml_ncname!("type").into(), "chat")
        .attr(rxml::xml_ncname!("id").into(), id);
    if encrypted_element.payload.is_some() {
        builder = builder.append(
            Element::builder("body", ns::CLIENT)
                .append(FALLBACK_BODY)
                .build(),
        );
    }
    builder = builder.append(encrypted(encrypted_element));
    if encrypted_element.payload.is_some() {
        builder = builder
            .append(
                Element::builder("encryption", EME)
                    .attr(rxml::xml_ncname!("namespace").into(), NS)
                    .attr(rxml::xml_ncname!("name").into(), "OMEMO")
                    .build(),
            )
            .append(
                Element::builder("origin-id", ns::SID)
                    .attr(rxml::xml_ncname!("id").into(), id)
                    .build(),
            )
            .append(Element::bare("request", ns::RECEIPTS))
            .append(Element::bare("active", ns::CHATSTATES));
    }
    builder.append(Element::bare("store", ns::HINTS)).build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use sotto_omemo::account::Account;

    fn text(e: &Element) -> String {
        let mut out = Vec::new();
        e.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn device_list_round_trip_and_limits() {
        let e = device_list(&[1, 42]);
        assert_eq!(
            text(&e),
            "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/><device id='42'/></list>"
        );
        assert_eq!(parse_device_list(&e).unwrap(), vec![1, 42]);
        let odd: Element = "<list xmlns='eu.siacs.conversations.axolotl'><device id='0'/><device id='7'/><device id='7'/><device id='4294967295'/></list>".parse().unwrap();
        assert_eq!(parse_device_list(&odd).unwrap(), vec![7]);
        let bad: Element = "<list xmlns='urn:other'/>".parse().unwrap();
        assert!(parse_device_list(&bad).is_err());
    }

    #[test]
    fn bundle_round_trip_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let account = Account::new(&mut rng);
        let e = bundle(&account.bundle());
        let text = text(&e);
        assert!(text.contains("signedPreKeyId='1'"), "{text}");
        let remote = parse_bundle(&text.parse().unwrap()).unwrap();
        assert_eq!(remote.identity_key(), account.identity_key());
        assert_eq!(remote.pre_keys().len(), 100);
    }

    #[test]
    fn conversations_style_message_parses() {
        let xml = "<message xmlns='jabber:client' to='bob@x' type='chat' id='m1'><body>x</body>\
            <encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='5'>\
            <key rid='7'>AQI=</key><key prekey='1' rid='8'>\nAwQ=\n</key><key rid='x'>AA==</key>\
            <iv>AAAAAAAAAAAAAAAA</iv></header><payload>BQY=</payload></encrypted></message>";
        let m: Element = xml.parse().unwrap();
        let e = parse_encrypted(&m).unwrap().unwrap();
        assert_eq!(e.sid, 5);
        assert_eq!(e.keys.len(), 2);
        assert!(!e.keys[0].prekey && e.keys[1].prekey);
        assert_eq!(e.keys[1].data, vec![3, 4]);
        assert_eq!(e.iv.len(), 12);
        assert_eq!(e.payload, Some(vec![5, 6]));
        let built = message("bob@x", "m1", &e);
        let again = parse_encrypted(&built).unwrap().unwrap();
        assert_eq!(again, e);
        let text = text(&built);
        assert!(text.contains(FALLBACK_BODY), "{text}");
        assert!(
            text.contains("<encryption xmlns='urn:xmpp:eme:0'"),
            "{text}"
        );
        assert!(text.contains("<store xmlns='urn:xmpp:hints'/>"), "{text}");
    }

    #[test]
    fn malformed_encrypted_is_an_error_not_a_panic() {
        for xml in [
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='-1'><iv>AA==</iv></header></encrypted></message>",
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted></message>",
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AA==</iv></header><payload>!!</payload></encrypted></message>",
        ] {
            let m: Element = xml.parse().unwrap();
            assert!(parse_encrypted(&m).unwrap().is_err(), "{xml}");
        }
    }
}
