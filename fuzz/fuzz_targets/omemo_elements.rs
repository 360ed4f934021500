//! OMEMO's XML from the network: device lists and bundles (PEP items of any contact) and the
//! `<encrypted/>` element of any incoming message; and contacts' picture metadata and data
//! (XEP-0084), PEP items too. Parsing must never panic, and what parses must respect the
//! documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::Element;
use sotto_session::avatar;
use sotto_session::omemo::xml;
use sotto_session::PepItem;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(element) = text.parse::<Element>() else {
        return;
    };
    if let Ok(ids) = xml::parse_device_list(&element) {
        assert!(ids.len() <= xml::MAX_DEVICES_PER_LIST);
        // What we publish from a parsed list parses back to the same list.
        assert_eq!(xml::parse_device_list(&xml::device_list(&ids)).ok(), Some(ids));
    }
    let _ = xml::parse_bundle(&element);
    if let Some(Ok(encrypted)) = xml::parse_encrypted(&element) {
        let _ = xml::encrypted(&encrypted);
    }
    if let Ok(Some(announced)) = avatar::parse_metadata(&element) {
        assert!(avatar::IMAGE_TYPES.contains(&announced.mime));
        assert_eq!(announced.id.len(), 40);
    }
    // The element as a data item named by the id of an empty-looking picture: whatever it
    // holds, it is refused or it is the picture that id names, within the size bound.
    let announced = avatar::Announced {
        id: "da39a3ee5e6b4b0d3255bfef95601890afd80709".into(),
        mime: "image/png",
    };
    let item = PepItem {
        id: Some(announced.id.clone()),
        payload: Some(element),
    };
    if let Ok(picture) = avatar::parse_data(&[item], &announced) {
        assert!(picture.data.len() <= avatar::MAX_AVATAR_BYTES);
    }
});
