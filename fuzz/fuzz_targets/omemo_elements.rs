//! OMEMO's XML from the network: device lists and bundles (PEP items of any contact) and the
//! `<encrypted/>` element of any incoming message. Parsing must never panic, and what parses
//! must respect the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::Element;
use sotto_session::omemo::xml;

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
});
