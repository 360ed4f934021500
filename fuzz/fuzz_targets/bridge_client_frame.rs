//! `sotto_bridge::xml::parse_client_frame` on arbitrary input: every WebSocket text message a
//! browser (or anyone) sends to the bridge goes through it first.
//!
//! Invariants checked besides "no panic, no hang":
//! - the result is deterministic;
//! - an accepted stanza (`ClientFrame::Element`) is in a namespace;
//! - the same bytes, sent by a server inside a TCP stream, are cut out by the `Splitter` as one
//!   element with the same summary (the two parsers agree), when the stream declares no default
//!   namespace that the frame's children could inherit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_bridge::xml::{parse_client_frame, ClientFrame, Splitter, UpstreamEvent, XmlLimits};

/// A stream header without a default namespace: a standalone frame's unprefixed children with no
/// declaration of their own are in no namespace, and inside this stream they must be too.
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='f1' version='1.0' xml:lang='en'>";

fuzz_target!(|data: &[u8]| {
    // Messages arrive as WebSocket *text*, so they are UTF-8; map other bytes rather than drop
    // the input, so the fuzzer's byte mutations still reach the parser.
    let text = String::from_utf8_lossy(data);
    let small = XmlLimits {
        max_element_bytes: 256,
        max_depth: 4,
    };
    for limits in [XmlLimits::default(), small] {
        let result = parse_client_frame(&text, &limits);
        assert_eq!(
            result,
            parse_client_frame(&text, &limits),
            "not deterministic"
        );
        let Ok(ClientFrame::Element(info)) = result else {
            continue;
        };
        assert!(!info.namespace.is_empty(), "accepted without a namespace");

        let mut splitter = Splitter::new(limits);
        splitter.feed(HEADER.as_bytes()).expect("header rejected");
        match splitter.next_event() {
            Ok(Some(UpstreamEvent::StreamOpen { .. })) => {}
            other => panic!("no stream open: {other:?}"),
        }
        if let Err(e) = splitter.feed(text.as_bytes()) {
            panic!("frame accepted by parse_client_frame, rejected in a stream: {e:?}");
        }
        match splitter.next_event() {
            Ok(Some(UpstreamEvent::Element { info: again, .. })) => {
                assert_eq!(again, info, "the two parsers disagree on {text:?}")
            }
            other => panic!("frame accepted, but the splitter gave {other:?} for {text:?}"),
        }
        assert_eq!(splitter.next_event(), Ok(None), "more than one element");
    }
});
