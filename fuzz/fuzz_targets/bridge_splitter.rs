//! `sotto_bridge::xml::Splitter` fed arbitrary server bytes in arbitrary chunks, with resets.
//!
//! Input format: the raw upstream byte stream; each 0xFF byte (never valid in UTF-8, so it takes
//! nothing away from the input space) marks a `reset()` between two streams, as the relay does
//! after STARTTLS `<proceed/>` and after SASL success. Seeds are real Prosody sessions.
//!
//! Invariants checked besides "no panic, no hang":
//! - feeding the same bytes whole, one byte at a time, or in pseudo-random chunks gives the same
//!   outcome (accepted or not) and, when accepted, the same events;
//! - every emitted `Element.xml` is a standalone document: it re-parses with
//!   `parse_client_frame` to the same summary (so the browser gets valid RFC 7395 messages);
//! - every `StreamOpen.open_frame` re-parses as an `<open/>` with the header's version and lang;
//! - nothing follows `StreamClose` within a stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_bridge::xml::{
    parse_client_frame, ClientFrame, Splitter, UpstreamEvent, XmlError, XmlLimits, FRAMING_NS,
    STREAM_NS,
};

type Outcome = Result<Vec<Vec<UpstreamEvent>>, XmlError>;

/// Feeds each segment in pieces of `chunk()` bytes, resetting between segments.
fn run(segments: &[&[u8]], limits: XmlLimits, mut chunk: impl FnMut() -> usize) -> Outcome {
    let mut splitter = Splitter::new(limits);
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            splitter.reset();
        }
        let mut events = Vec::new();
        let mut rest: &[u8] = segment;
        while !rest.is_empty() {
            let n = chunk().clamp(1, rest.len());
            let (head, tail) = rest.split_at(n);
            splitter.feed(head)?;
            while let Some(event) = splitter.next_event()? {
                events.push(event);
            }
            rest = tail;
        }
        out.push(events);
    }
    Ok(out)
}

fn check_events(streams: &[Vec<UpstreamEvent>], limits: XmlLimits) {
    // Re-declared namespaces make an element a little longer than it was in the stream.
    let relaxed = XmlLimits {
        max_element_bytes: limits.max_element_bytes.saturating_mul(4).max(64 * 1024),
        max_depth: limits.max_depth,
    };
    for events in streams {
        let mut closed = false;
        for event in events {
            assert!(!closed, "event after StreamClose: {event:?}");
            match event {
                UpstreamEvent::Element { xml, info } => match parse_client_frame(xml, &relaxed) {
                    Ok(ClientFrame::Element(again)) => {
                        assert_eq!(&again, info, "summary differs after re-parse: {xml:?}")
                    }
                    // A server may send these as stanzas; the client-frame parser classifies
                    // them instead of returning an element. They are still standalone XML.
                    Ok(ClientFrame::Open { .. } | ClientFrame::Close { .. })
                    | Err(XmlError::UnexpectedFrame(_))
                        if info.namespace == FRAMING_NS
                            || (info.namespace == STREAM_NS && info.local_name == "stream") => {}
                    other => panic!("not a standalone element: {xml:?}: {other:?}"),
                },
                UpstreamEvent::StreamOpen {
                    open_frame,
                    version,
                    lang,
                    ..
                } => match parse_client_frame(open_frame, &relaxed) {
                    Ok(ClientFrame::Open {
                        version: v,
                        lang: l,
                        ..
                    }) => {
                        assert_eq!(&v, version, "{open_frame:?}");
                        assert_eq!(&l, lang, "{open_frame:?}");
                    }
                    other => panic!("bad open frame {open_frame:?}: {other:?}"),
                },
                UpstreamEvent::StreamClose => closed = true,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let segments: Vec<&[u8]> = data.split(|&b| b == 0xFF).collect();
    // A xorshift seeded from the input, so chunking is reproducible for a given input.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let small = XmlLimits {
        max_element_bytes: 512,
        max_depth: 6,
    };
    for limits in [XmlLimits::default(), small] {
        let whole = run(&segments, limits, || usize::MAX);
        let bytewise = run(&segments, limits, || 1);
        let chunked = run(&segments, limits, || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 97) as usize + 1
        });
        assert_eq!(
            whole.is_ok(),
            bytewise.is_ok(),
            "whole {whole:?} / bytewise {bytewise:?}"
        );
        assert_eq!(
            whole.is_ok(),
            chunked.is_ok(),
            "whole {whole:?} / chunked {chunked:?}"
        );
        if let (Ok(w), Ok(b), Ok(c)) = (&whole, &bytewise, &chunked) {
            assert_eq!(w, b, "whole and bytewise differ");
            assert_eq!(w, c, "whole and chunked differ");
            check_events(w, limits);
        }
    }
});
