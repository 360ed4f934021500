//! OMEMO 0.3 XML (`eu.siacs.conversations.axolotl`): device lists, bundles and the
//! `<encrypted/>` message element (PROTOCOLS.md §3), read and written by hand over minidom: lenient
//! about what other clients add, and much smaller in the browser than schema-generated code.

use minidom::Element;
use sotto_omemo::account::{Bundle, RemoteBundle};

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
/// Prekeys read from one bundle (publishers keep about 100).
pub const MAX_PREKEYS_PER_BUNDLE: usize = 256;

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
///
/// Read by hand, leniently: other clients add attributes (e.g. a device `label`) that a strict
/// schema would refuse, and one bad entry must not hide the others.
pub fn parse_device_list(element: &Element) -> Result<Vec<u32>, XmlError> {
    if !element.is("list", NS) {
        return Err(XmlError::Malformed("device list"));
    }
    let mut ids: Vec<u32> = Vec::new();
    for device in element.children().filter(|c| c.is("device", NS)) {
        let Some(id) = device.attr("id").and_then(|id| id.parse::<u32>().ok()) else {
            continue;
        };
        if id == 0 || id > 0x7FFF_FFFF || ids.contains(&id) {
            continue;
        }
        if ids.len() >= MAX_DEVICES_PER_LIST {
            break;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Builds a device list.
pub fn device_list(ids: &[u32]) -> Element {
    let mut list = Element::builder("list", NS);
    for id in ids {
        list = list.append(
            Element::builder("device", NS)
                .attr(rxml::xml_ncname!("id").into(), id.to_string())
                .build(),
        );
    }
    list.build()
}

/// Builds our bundle element.
pub fn bundle(bundle: &Bundle) -> Element {
    let mut prekeys = Element::builder("prekeys", NS);
    for (id, key) in bundle.pre_keys() {
        prekeys = prekeys.append(
            base64_element("preKeyPublic", &key.to_bytes())
                .attr(rxml::xml_ncname!("preKeyId").into(), id.to_string())
                .build(),
        );
    }
    Element::builder("bundle", NS)
        .append(
            base64_element("signedPreKeyPublic", &bundle.signed_pre_key().to_bytes())
                .attr(
                    rxml::xml_ncname!("signedPreKeyId").into(),
                    bundle.signed_pre_key_id().to_string(),
                )
                .build(),
        )
        .append(base64_element("signedPreKeySignature", bundle.signed_pre_key_signature()).build())
        .append(base64_element("identityKey", &bundle.identity_key().to_bytes()).build())
        .append(prekeys.build())
        .build()
}

/// An element of the OMEMO namespace whose text is `data` in base64.
fn base64_element(name: &str, data: &[u8]) -> minidom::element::ElementBuilder {
    use base64::Engine as _;
    Element::builder(name, NS).append(base64::engine::general_purpose::STANDARD.encode(data))
}

/// Parses and validates (signature included) a contact's bundle.
///
/// Read by hand (as `<encrypted/>` is): lenient about what other clients add, strict about
/// what is used — every key must be valid base64 and the signature must verify
/// ([`RemoteBundle::new`]); prekeys with a bad id or encoding are skipped, at most
/// [`MAX_PREKEYS_PER_BUNDLE`] read.
pub fn parse_bundle(element: &Element) -> Result<RemoteBundle, XmlError> {
    if !element.is("bundle", NS) {
        return Err(XmlError::Malformed("bundle"));
    }
    let required = |name: &str, what: &'static str| {
        element
            .get_child(name, NS)
            .and_then(|e| base64_text(e).map(|data| (e, data)))
            .ok_or(XmlError::Malformed(what))
    };
    let (spk, spk_data) = required("signedPreKeyPublic", "bundle (signed prekey)")?;
    let (_, signature) = required("signedPreKeySignature", "bundle (signature)")?;
    let (_, identity) = required("identityKey", "bundle (identity key)")?;
    let spk_id = match spk.attr("signedPreKeyId") {
        Some(id) => id
            .parse::<u32>()
            .map_err(|_| XmlError::Malformed("bundle (signed prekey id)"))?,
        None => 0,
    };
    let pre_keys = element
        .get_child("prekeys", NS)
        .into_iter()
        .flat_map(|p| p.children().filter(|c| c.is("preKeyPublic", NS)))
        .take(MAX_PREKEYS_PER_BUNDLE)
        .filter_map(|k| {
            let id = k.attr("preKeyId")?.parse::<u32>().ok()?;
            Some((id, base64_text(k)?))
        });
    Ok(RemoteBundle::new(
        &identity, spk_id, &spk_data, &signature, pre_keys,
    )?)
}

/// The base64 text of an element, whitespace ignored (some clients wrap long values).
fn base64_text(e: &Element) -> Option<Vec<u8>> {
    let text: String = e.text().chars().filter(|c| !c.is_whitespace()).collect();
    base64_decode(&text)
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
    // Old senders write `prekey='1'`, and others add attributes of their own: both accepted.
    let header = element
        .get_child("header", NS)
        .ok_or(XmlError::Malformed("encrypted (header)"))?;
    let sid = header
        .attr("sid")
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or(XmlError::Malformed("encrypted (sid)"))?;
    let b64 = base64_text;
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

/// Builds the `<encrypted/>` element. `prekey='true'` marks a `PreKeySignalMessage` (absent
/// otherwise, as the spec and Conversations write it).
pub fn encrypted(message: &EncryptedElement) -> Element {
    let mut header = Element::builder("header", NS)
        .attr(rxml::xml_ncname!("sid").into(), message.sid.to_string());
    for key in &message.keys {
        let mut element = base64_element("key", &key.data)
            .attr(rxml::xml_ncname!("rid").into(), key.rid.to_string());
        if key.prekey {
            element = element.attr(rxml::xml_ncname!("prekey").into(), "true");
        }
        header = header.append(element.build());
    }
    header = header.append(base64_element("iv", &message.iv).build());
    let mut encrypted = Element::builder("encrypted", NS).append(header.build());
    if let Some(payload) = &message.payload {
        encrypted = encrypted.append(base64_element("payload", payload).build());
    }
    encrypted.build()
}

/// Builds a whole OMEMO chat message: fallback body (when it has a payload), `<encrypted/>`,
/// EME and the store hint (PROTOCOLS.md §3), and for a correction the XEP-0308 `<replace/>`
/// naming the message it corrects.
pub fn message(
    to: &str,
    id: &str,
    encrypted_element: &EncryptedElement,
    replaces: Option<&str>,
) -> Element {
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
        if let Some(replaces) = replaces {
            builder = builder.append(
                Element::builder("replace", ns::CORRECT)
                    .attr(rxml::xml_ncname!("id").into(), replaces)
                    .build(),
            );
        }
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
        // What other clients add (a label), and one bad entry among good ones.
        let labelled: Element = "<list xmlns='eu.siacs.conversations.axolotl'>\
            <device id='11' label='Gajim on laptop'/><device id='twelve'/><device/>\
            <device id='13'/><other xmlns='urn:x'/></list>"
            .parse()
            .unwrap();
        assert_eq!(parse_device_list(&labelled).unwrap(), vec![11, 13]);
        let many = format!(
            "<list xmlns='eu.siacs.conversations.axolotl'>{}</list>",
            (1..=200)
                .map(|i| format!("<device id='{i}'/>"))
                .collect::<String>()
        );
        let ids = parse_device_list(&many.parse().unwrap()).unwrap();
        assert_eq!(ids.len(), MAX_DEVICES_PER_LIST);
    }

    #[test]
    fn bundle_parsing_is_lenient_about_extras_and_strict_about_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let account = Account::new(&mut rng);
        let good = text(&bundle(&account.bundle()));
        // Wrapped base64 and an attribute the schema does not know still parse.
        let wrapped = good
            .replacen("<identityKey>", "<identityKey extra='1'>\n", 1)
            .replacen("</identityKey>", "\n</identityKey>", 1);
        let remote = parse_bundle(&wrapped.parse().unwrap()).unwrap();
        assert_eq!(remote.identity_key(), account.identity_key());
        // A prekey with a bad id is skipped, the rest kept.
        let odd_prekey = good.replacen("preKeyId='1'", "preKeyId='one'", 1);
        let remote = parse_bundle(&odd_prekey.parse().unwrap()).unwrap();
        assert_eq!(remote.pre_keys().len(), 99);
        // Missing or broken required parts are errors.
        let start = good.find("<identityKey>").unwrap();
        let end = good.find("</identityKey>").unwrap() + "</identityKey>".len();
        let no_identity = format!("{}{}", &good[..start], &good[end..]);
        assert!(matches!(
            parse_bundle(&no_identity.parse().unwrap()),
            Err(XmlError::Malformed("bundle (identity key)"))
        ));
        let bad_b64 = good.replacen("<identityKey>", "<identityKey>!!", 1);
        assert!(parse_bundle(&bad_b64.parse().unwrap()).is_err());
        let bad_spk_id = good.replacen("signedPreKeyId='1'", "signedPreKeyId='x'", 1);
        assert!(parse_bundle(&bad_spk_id.parse().unwrap()).is_err());
        let other_ns: Element = "<bundle xmlns='urn:other'/>".parse().unwrap();
        assert!(parse_bundle(&other_ns).is_err());
        // A signature over something else does not verify.
        let other = Account::new(&mut rng);
        let other_text = text(&bundle(&other.bundle()));
        let sig = |t: &str| {
            let a = t.find("<signedPreKeySignature>").unwrap();
            let b = t.find("</signedPreKeySignature>").unwrap();
            t[a..b].to_owned()
        };
        let forged = good.replacen(&sig(&good), &sig(&other_text), 1);
        assert!(matches!(
            parse_bundle(&forged.parse().unwrap()),
            Err(XmlError::InvalidBundle(_))
        ));
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
        let built = message("bob@x", "m1", &e, None);
        let again = parse_encrypted(&built).unwrap().unwrap();
        assert_eq!(again, e);
        let text = text(&built);
        assert!(text.contains(FALLBACK_BODY), "{text}");
        assert!(
            text.contains("<encryption xmlns='urn:xmpp:eme:0'"),
            "{text}"
        );
        assert!(text.contains("<store xmlns='urn:xmpp:hints'/>"), "{text}");
        assert!(!text.contains("replace"), "{text}");
        // A correction names the message it corrects, outside the encrypted element.
        let correction = message("bob@x", "m2", &e, Some("m1"));
        let replace = correction
            .get_child("replace", ns::CORRECT)
            .and_then(|r| r.attr("id"));
        assert_eq!(replace, Some("m1"));
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
