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
    // The input's bytes as a picture of ours: what we publish reads back as the same picture.
    if let Ok((id, data_item, _metadata)) = avatar::prepare(data, "image/png", 1, 1) {
        let announced = avatar::Announced {
            id: id.clone(),
            mime: "image/png",
        };
        let item = PepItem {
            id: Some(id),
            payload: Some(data_item),
        };
        let picture = avatar::parse_data(&[item], &announced).expect("our own picture reads back");
        assert_eq!(picture.data, data);
    }
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
    // The element as a data item: whatever it holds, reading it must not panic.
    let announced = avatar::Announced {
        id: "da39a3ee5e6b4b0d3255bfef95601890afd80709".into(),
        mime: "image/png",
    };
    let item = PepItem {
        id: Some(announced.id.clone()),
        payload: Some(element),
    };
    let _ = avatar::parse_data(&[item], &announced);
});
