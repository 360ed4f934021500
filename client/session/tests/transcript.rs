//! The session core against scripted servers: no network, virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use proptest::prelude::*;
use sotto_session::{ChatMessage, Config, Event, Instant, LoginError, Session};

const FEATURES_PRE: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const FEATURES_POST: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>";
const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0'/>";

/// A deterministic RNG for tests (never for real use).
struct TestRng(u64);

impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for TestRng {}

fn config(allow_plain: bool) -> Config {
    Config {
        jid: "alice@localhost".parse().unwrap(),
        password: zeroize::Zeroizing::new("secret".into()),
        resource: Some("test".into()),
        allow_plain,
        service: None,
    }
}

fn session(allow_plain: bool) -> Session {
    Session::new(config(allow_plain), &mut TestRng(7))
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn sent(s: &mut Session) -> Vec<String> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The chat messages among the events.
fn chat_messages(s: &mut Session) -> Vec<ChatMessage> {
    events(s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn attr<'a>(frame: &'a str, name: &str) -> &'a str {
    let start = [format!(" {name}='"), format!(" {name}=\"")]
        .iter()
        .find_map(|key| frame.find(key.as_str()).map(|i| i + key.len()))
        .unwrap_or_else(|| panic!("no {name} in {frame}"));
    let end = frame[start..].find(['\'', '"']).unwrap();
    &frame[start..start + end]
}

fn body_text(frame: &str) -> String {
    let inner = frame.split('>').nth(1).unwrap().split('<').next().unwrap();
    String::from_utf8(BASE64.decode(inner).unwrap()).unwrap()
}

fn bind_result(id: &str) -> String {
    format!("<iq xmlns='jabber:client' type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/test</jid></bind></iq>")
}

/// Logs in with PLAIN, binds and enables stream management.
fn online() -> Session {
    let mut s = session(true);
    s.handle_connected(t(0));
    let out = sent(&mut s);
    assert!(
        out[0].starts_with("<open") && attr(&out[0], "to") == "localhost",
        "{out:?}"
    );
    s.handle_frame(OPEN, t(1));
    s.handle_frame(FEATURES_PRE, t(1));
    let out = sent(&mut s);
    assert_eq!(attr(&out[0], "mechanism"), "PLAIN");
    assert_eq!(body_text(&out[0]), "\0alice\0secret");
    s.handle_frame("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", t(2));
    assert!(sent(&mut s)[0].starts_with("<open"));
    s.handle_frame(OPEN, t(3));
    s.handle_frame(FEATURES_POST, t(3));
    let out = sent(&mut s);
    let bind = out.iter().find(|f| f.contains("xmpp-bind")).unwrap();
    assert!(bind.contains("<resource>test</resource>"));
    assert!(out
        .iter()
        .any(|f| f.contains("<enable") && f.contains("urn:xmpp:sm:3")));
    let id = attr(bind, "id").to_owned();
    s.handle_frame(&bind_result(&id), t(4));
    s.handle_frame(
        "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>",
        t(4),
    );
    let out = sent(&mut s);
    assert!(
        out.iter().any(|f| f.contains("urn:xmpp:carbons:2")),
        "{out:?}"
    );
    assert!(
        out.iter().any(|f| f.contains("jabber:iq:roster")),
        "{out:?}"
    );
    assert!(out.iter().any(|f| f.starts_with("<presence")), "{out:?}");
    assert!(events(&mut s)
        .iter()
        .any(|e| matches!(e, Event::Online { resumed: false, .. })));
    assert!(s.is_online() && s.is_resumable());
    s
}

#[test]
fn plain_is_refused_unless_allowed() {
    let mut s = session(false);
    s.handle_connected(t(0));
    sent(&mut s);
    s.handle_frame(OPEN, t(1));
    s.handle_frame(FEATURES_PRE, t(1));
    let evs = events(&mut s);
    assert!(
        matches!(&evs[..], [Event::LoginFailed(LoginError::NoSupportedMechanism { offered })] if offered == "PLAIN"),
        "{evs:?}"
    );
    assert!(sent(&mut s).iter().all(|f| !f.contains("<auth")));
}

#[test]
fn scram_sha256_is_preferred_and_weak_iterations_refused() {
    let mut s = session(true);
    s.handle_connected(t(0));
    sent(&mut s);
    s.handle_frame(OPEN, t(1));
    s.handle_frame("<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>", t(1));
    let out = sent(&mut s);
    assert_eq!(attr(&out[0], "mechanism"), "SCRAM-SHA-256");
    let first = body_text(&out[0]);
    assert!(first.starts_with("n,,n=alice,r="), "{first}");
    let nonce = first.split("r=").nth(1).unwrap();
    let challenge = BASE64.encode(format!("r={nonce}server,s=c2FsdA==,i=1000"));
    s.handle_frame(
        &format!("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{challenge}</challenge>"),
        t(2),
    );
    let evs = events(&mut s);
    assert!(
        matches!(&evs[..], [Event::LoginFailed(LoginError::Scram(_))]),
        "{evs:?}"
    );
}

#[test]
fn wrong_password_and_disabled_account() {
    for (condition, expected) in [
        ("not-authorized", LoginError::WrongPassword),
        ("account-disabled", LoginError::AccountDisabled),
    ] {
        let mut s = session(true);
        s.handle_connected(t(0));
        s.handle_frame(OPEN, t(1));
        s.handle_frame(FEATURES_PRE, t(1));
        s.handle_frame(
            &format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{condition}/></failure>"),
            t(2),
        );
        assert_eq!(events(&mut s), vec![Event::LoginFailed(expected)]);
    }
}

#[test]
fn acks_answer_requests_and_confirm_messages() {
    let mut s = online();
    let bob = "bob@localhost".parse().unwrap();
    let id = s.send_chat(&bob, "hi").unwrap();
    let out = sent(&mut s);
    assert!(out
        .iter()
        .any(|f| f.contains("<body>hi</body>") && f.contains("urn:xmpp:sid:0")));
    assert!(out.iter().any(|f| f.starts_with("<r ")), "{out:?}");
    // The server handled the carbons iq, roster iq, presence and the message: h = 4.
    s.handle_frame("<a xmlns='urn:xmpp:sm:3' h='4'/>", t(10));
    assert_eq!(events(&mut s), vec![Event::MessageAcked { id }]);
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat'><body>yo</body></message>", t(11));
    s.handle_frame("<r xmlns='urn:xmpp:sm:3'/>", t(11));
    let out = sent(&mut s);
    assert!(out.iter().any(|f| attr(f, "h") == "1"), "{out:?}");
    // An ack for more than we sent is ignored, not a panic.
    s.handle_frame("<a xmlns='urn:xmpp:sm:3' h='4000'/>", t(12));
}

#[test]
fn resumption_resends_unacknowledged_stanzas_exactly_once() {
    let mut s = online();
    let bob = "bob@localhost".parse().unwrap();
    s.handle_frame("<a xmlns='urn:xmpp:sm:3' h='3'/>", t(5));
    let id = s.send_chat(&bob, "maybe lost").unwrap();
    sent(&mut s);
    s.handle_disconnected(t(6));
    assert!(events(&mut s).contains(&Event::Disconnected { resumable: true }));
    let offline_id = s.send_chat(&bob, "written offline").unwrap();
    s.handle_connected(t(7));
    s.handle_frame(OPEN, t(8));
    s.handle_frame(FEATURES_PRE, t(8));
    s.handle_frame("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", t(9));
    s.handle_frame(OPEN, t(9));
    s.handle_frame(FEATURES_POST, t(9));
    let out = sent(&mut s);
    let resume = out
        .iter()
        .find(|f| f.starts_with("<resume"))
        .expect("resume sent");
    assert_eq!(attr(resume, "previd"), "sm-1");
    assert!(
        !out.iter().any(|f| f.contains("xmpp-bind")),
        "no new bind when resuming"
    );
    s.handle_frame(
        "<resumed xmlns='urn:xmpp:sm:3' previd='sm-1' h='3'/>",
        t(10),
    );
    let out = sent(&mut s);
    assert_eq!(
        out.iter().filter(|f| f.contains("maybe lost")).count(),
        1,
        "{out:?}"
    );
    assert_eq!(
        out.iter().filter(|f| f.contains("written offline")).count(),
        1,
        "{out:?}"
    );
    assert!(events(&mut s)
        .iter()
        .any(|e| matches!(e, Event::Online { resumed: true, .. })));
    s.handle_frame("<a xmlns='urn:xmpp:sm:3' h='5'/>", t(11));
    assert_eq!(
        events(&mut s),
        vec![
            Event::MessageAcked { id },
            Event::MessageAcked { id: offline_id }
        ]
    );
}

#[test]
fn failed_resumption_starts_a_new_session_and_resends_messages() {
    let mut s = online();
    let bob = "bob@localhost".parse().unwrap();
    s.send_chat(&bob, "unconfirmed").unwrap();
    s.handle_disconnected(t(6));
    s.handle_connected(t(7));
    s.handle_frame(OPEN, t(8));
    s.handle_frame(FEATURES_PRE, t(8));
    s.handle_frame("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", t(9));
    s.handle_frame(OPEN, t(9));
    s.handle_frame(FEATURES_POST, t(9));
    sent(&mut s);
    s.handle_frame("<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>", t(10));
    let out = sent(&mut s);
    let bind = out
        .iter()
        .find(|f| f.contains("xmpp-bind"))
        .expect("new bind");
    let id = attr(bind, "id").to_owned();
    assert!(events(&mut s).contains(&Event::ResumeFailed));
    s.handle_frame(&bind_result(&id), t(11));
    let out = sent(&mut s);
    assert_eq!(
        out.iter().filter(|f| f.contains("unconfirmed")).count(),
        1,
        "{out:?}"
    );
}

#[test]
fn forged_carbons_are_ignored_and_real_ones_delivered() {
    let mut s = online();
    events(&mut s);
    let carbon = |from: &str| {
        format!("<message xmlns='jabber:client' from='{from}' to='alice@localhost/test'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='alice@localhost/phone' to='bob@localhost' type='chat'><body>from my phone</body></message></forwarded></sent></message>")
    };
    s.handle_frame(&carbon("mallory@evil.example"), t(5));
    assert!(
        events(&mut s).is_empty(),
        "a carbon from a stranger must be dropped"
    );
    s.handle_frame(&carbon("alice@localhost"), t(6));
    let evs = events(&mut s);
    assert!(
        matches!(&evs[..], [Event::Message(m)] if m.carbon && m.peer.as_str() == "bob@localhost" && m.body.as_deref() == Some("from my phone")),
        "{evs:?}"
    );
}

#[test]
fn corrections_and_retractions_name_their_message() {
    let mut s = online();
    events(&mut s);
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat' id='c1'><body>the right text</body><replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>", t(5));
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat' id='c2'><body>not one</body><replace xmlns='urn:example:other' id='m1'/></message>", t(6));
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat' id='c3'><body>nor this</body><replace xmlns='urn:xmpp:message-correct:0' id=''/></message>", t(7));
    let replaces: Vec<Option<String>> = chat_messages(&mut s)
        .into_iter()
        .map(|m| m.replaces)
        .collect();
    assert_eq!(replaces, [Some("m1".to_owned()), None, None]);
    // Retractions (XEP-0424), version 1 and version 0, with or without a fallback body.
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat' id='r1'><retract xmlns='urn:xmpp:message-retract:1' id='m1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>/me retracted a message</body><store xmlns='urn:xmpp:hints'/></message>", t(9));
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat' id='r2'><apply-to xmlns='urn:xmpp:fasten:0' id='m2'><retract xmlns='urn:xmpp:message-retract:0'/></apply-to></message>", t(10));
    s.handle_frame("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost/test' type='chat' id='r3'><apply-to xmlns='urn:xmpp:fasten:0' id='m3'><other xmlns='urn:example:x'/></apply-to></message>", t(11));
    let retracts: Vec<Option<String>> = chat_messages(&mut s)
        .into_iter()
        .map(|m| m.retracts)
        .collect();
    assert_eq!(retracts, [Some("m1".to_owned()), Some("m2".to_owned())]);
    // Ours go out naming the message both ways, with the fallback marked and kept in the
    // archive, and read back as the retraction they are (our other devices get them as
    // carbons).
    sent(&mut s);
    let id = s
        .send_retraction(&"bob@localhost".parse().unwrap(), "m9")
        .unwrap();
    let out = sent(&mut s);
    let frame = out
        .iter()
        .find(|f| attr(f, "id") == id)
        .expect("the retraction is sent");
    let element: minidom::Element = frame.parse().unwrap();
    assert_eq!(element.attr("to"), Some("bob@localhost"));
    assert_eq!(
        element
            .get_child("retract", "urn:xmpp:message-retract:1")
            .and_then(|r| r.attr("id")),
        Some("m9")
    );
    let apply_to = element.get_child("apply-to", "urn:xmpp:fasten:0").unwrap();
    assert_eq!(apply_to.attr("id"), Some("m9"));
    assert!(apply_to.has_child("retract", "urn:xmpp:message-retract:0"));
    assert_eq!(
        element
            .get_child("fallback", "urn:xmpp:fallback:0")
            .and_then(|f| f.attr("for")),
        Some("urn:xmpp:message-retract:1")
    );
    assert!(element.has_child("store", "urn:xmpp:hints"));
    assert!(!element.has_child("request", "urn:xmpp:receipts"));
    let carbon = format!("<message xmlns='jabber:client' from='alice@localhost' to='alice@localhost/test'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>{}</forwarded></sent></message>",
        frame.replace("<message ", "<message from='alice@localhost/test' "));
    s.handle_frame(&carbon, t(11));
    let ours = chat_messages(&mut s);
    assert!(
        matches!(&ours[..], [m] if m.retracts.as_deref() == Some("m9") && m.direction == sotto_session::Direction::Outgoing),
        "{ours:?}"
    );
    for bad in ["", &"x".repeat(257)] {
        assert_eq!(
            s.send_retraction(&"bob@localhost".parse().unwrap(), bad),
            Err(sotto_session::CommandError::BadId)
        );
    }
    // Advertised, so that other clients know corrections are shown as corrections.
    s.handle_frame("<iq xmlns='jabber:client' type='get' id='d1' from='bob@localhost/x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", t(12));
    assert!(sent(&mut s).iter().any(|f| attr(f, "id") == "d1"
        && f.contains("urn:xmpp:message-correct:0")
        && f.contains("urn:xmpp:message-retract:1")));
}

#[test]
fn stream_errors_are_surfaced_and_downgrading_redirects_refused() {
    let mut s = online();
    events(&mut s);
    s.handle_frame("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by new connection</text></stream:error>", t(5));
    let evs = events(&mut s);
    assert!(
        matches!(&evs[0], Event::StreamError(e) if e.condition == "conflict" && e.text.as_deref() == Some("Replaced by new connection")),
        "{evs:?}"
    );

    let mut secure = Session::new(
        Config {
            service: Some(
                sotto_session::service::ServiceUrl::parse("wss://chat.example/ws").unwrap(),
            ),
            ..config(false)
        },
        &mut TestRng(1),
    );
    secure.handle_connected(t(0));
    secure.handle_frame(
        "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='ws://evil.example/ws'/>",
        t(1),
    );
    let evs = events(&mut secure);
    assert!(
        matches!(&evs[0], Event::StreamError(e) if e.text.as_deref().is_some_and(|t| t.contains("insecure"))),
        "{evs:?}"
    );
}

#[test]
fn unknown_iqs_get_service_unavailable_and_disco_is_answered() {
    let mut s = online();
    sent(&mut s);
    s.handle_frame("<iq xmlns='jabber:client' type='get' id='q1' from='bob@localhost/x'><query xmlns='urn:example:unknown'/></iq>", t(5));
    let out = sent(&mut s);
    assert!(
        out.iter()
            .any(|f| f.contains("service-unavailable") && attr(f, "id") == "q1"),
        "{out:?}"
    );
    s.handle_frame("<iq xmlns='jabber:client' type='get' id='d1' from='bob@localhost/x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", t(5));
    let out = sent(&mut s);
    assert!(
        out.iter().any(|f| attr(f, "id") == "d1"
            && f.contains("urn:xmpp:carbons:2")
            && attr(f, "type") == "result"),
        "{out:?}"
    );
}

#[test]
fn a_silent_connection_is_probed_then_declared_dead() {
    let mut s = online();
    sent(&mut s);
    events(&mut s);
    let probe_at = s.poll_timeout().unwrap();
    assert_eq!(probe_at, t(4) + Duration::from_secs(60));
    s.handle_timeout(probe_at);
    assert!(sent(&mut s).iter().any(|f| f.starts_with("<r")));
    let dead_at = s.poll_timeout().unwrap();
    s.handle_timeout(dead_at);
    assert_eq!(
        events(&mut s),
        vec![Event::Disconnected { resumable: true }]
    );
}

#[test]
fn login_times_out() {
    let mut s = session(true);
    s.handle_connected(t(0));
    let deadline = s.poll_timeout().unwrap();
    s.handle_timeout(deadline);
    assert_eq!(
        events(&mut s),
        vec![Event::LoginFailed(LoginError::Timeout)]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_frames_never_panic(frames in proptest::collection::vec(".{0,200}", 1..8), online_first in any::<bool>()) {
        let mut s = if online_first { online() } else { session(true) };
        if !online_first {
            s.handle_connected(t(0));
        }
        for (i, frame) in frames.iter().enumerate() {
            s.handle_frame(frame, t(10 + i as u64));
            let _ = sent(&mut s);
            let _ = events(&mut s);
        }
    }

    #[test]
    fn arbitrary_stanzas_never_panic(body in ".{0,100}", value in "[a-z@./0-9]{0,20}", kind in 0usize..4) {
        let mut s = online();
        let escaped = body.replace('&', "&amp;").replace('<', "&lt;");
        let frame = match kind {
            0 => format!("<message xmlns='jabber:client' from='{value}' type='chat'><body>{escaped}</body></message>"),
            1 => format!("<presence xmlns='jabber:client' from='{value}' type='{value}'/>"),
            2 => format!("<iq xmlns='jabber:client' from='{value}' id='{value}' type='set'><query xmlns='jabber:iq:roster'><item jid='{value}' subscription='{value}'/></query></iq>"),
            _ => format!("<a xmlns='urn:xmpp:sm:3' h='{value}'/>"),
        };
        s.handle_frame(&frame, t(20));
        let _ = sent(&mut s);
        let _ = events(&mut s);
    }
}

#[test]
fn renaming_a_contact_keeps_their_groups() {
    let mut s = online();
    events(&mut s);
    s.handle_frame("<iq xmlns='jabber:client' type='set' id='push1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob' subscription='both'><group>Friends</group><group>Work</group></item></query></iq>", t(5));
    sent(&mut s);
    let bob: sotto_session::BareJid = "bob@localhost".parse().unwrap();
    s.rename_contact(&bob, Some("  Robert  ")).unwrap();
    let out = sent(&mut s);
    let set: minidom::Element = out
        .iter()
        .find(|f| f.contains("jabber:iq:roster"))
        .expect("a roster set")
        .parse()
        .unwrap();
    let item = set
        .get_child("query", "jabber:iq:roster")
        .and_then(|q| q.get_child("item", "jabber:iq:roster"))
        .unwrap();
    assert_eq!(item.attr("jid"), Some("bob@localhost"));
    assert_eq!(item.attr("name"), Some("Robert"));
    assert_eq!(item.attr("subscription"), None);
    let groups: Vec<String> = item.children().map(minidom::Element::text).collect();
    assert_eq!(groups, ["Friends", "Work"]);
    // No name: the attribute goes, and the address is what clients show.
    s.rename_contact(&bob, Some(" ")).unwrap();
    let out = sent(&mut s);
    assert!(out
        .iter()
        .any(|f| f.contains("jabber:iq:roster") && !f.contains("name=")));
    assert_eq!(
        s.rename_contact(&bob, Some(&"x".repeat(257))),
        Err(sotto_session::CommandError::BadName)
    );
    assert_eq!(
        s.rename_contact(&bob, Some("two\nlines")),
        Err(sotto_session::CommandError::BadName)
    );
    assert_eq!(
        s.rename_contact(&"carol@localhost".parse().unwrap(), Some("Carol")),
        Err(sotto_session::CommandError::NotInRoster)
    );
}

#[test]
fn contacts_pictures_are_fetched_by_id_checked_and_throttled() {
    use sha1::Digest as _;
    use sotto_session::avatar::{AvatarEvent, Avatars, MAX_FETCHES};
    let mut s = online();
    let mut avatars = Avatars::new();
    avatars.attach(&mut s);
    events(&mut s);
    sent(&mut s);
    let picture = b"\x89PNG\r\n\x1a\npicture bytes".to_vec();
    let id: String = sha1::Sha1::digest(&picture)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let announce = |from: &str, infos: &str| {
        format!("<message xmlns='jabber:client' from='{from}' to='alice@localhost/test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:avatar:metadata'><item id='x'><metadata xmlns='urn:xmpp:avatar:metadata'>{infos}</metadata></item></items></event></message>")
    };
    let info = format!(
        "<info bytes='{}' id='{id}' type='image/png'/>",
        picture.len()
    );
    // Pump the session's events through the layer; what it leaves is returned.
    let pump = |s: &mut Session, avatars: &mut Avatars| -> Vec<Event> {
        let mut left = Vec::new();
        while let Some(e) = s.poll_event() {
            if let Some(e) = avatars.handle_event(s, e) {
                left.push(e);
            }
        }
        left
    };
    // Six contacts announce pictures at once: four fetches go out, each for its item only.
    for n in 0..6 {
        s.handle_frame(&announce(&format!("c{n}@localhost"), &info), t(5));
    }
    assert!(pump(&mut s, &mut avatars).is_empty());
    let fetches = sent(&mut s);
    assert_eq!(fetches.len(), MAX_FETCHES, "{fetches:?}");
    assert!(
        fetches[0].contains("urn:xmpp:avatar:data") && fetches[0].contains(&id),
        "{}",
        fetches[0]
    );
    // The first answer: the picture, checked, for the UI; a fifth fetch starts.
    let answer = |to_id: &str, from: &str, data: &[u8]| {
        format!("<iq xmlns='jabber:client' type='result' id='{to_id}' from='{from}' to='alice@localhost/test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'><item id='{id}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item></items></pubsub></iq>", BASE64.encode(data))
    };
    s.handle_frame(
        &answer(attr(&fetches[0], "id"), "c0@localhost", &picture),
        t(6),
    );
    assert!(pump(&mut s, &mut avatars).is_empty());
    let changed = avatars.poll_event();
    assert!(
        matches!(&changed, Some(AvatarEvent::Changed { jid, avatar: Some(a) }) if jid.as_str() == "c0@localhost" && a.data == picture && a.mime == "image/png"),
        "{changed:?}"
    );
    assert_eq!(sent(&mut s).len(), 1, "the fifth fetch");
    // Bytes that are not the picture the id names are not shown.
    s.handle_frame(
        &answer(attr(&fetches[1], "id"), "c1@localhost", b"something else"),
        t(7),
    );
    pump(&mut s, &mut avatars);
    assert!(
        matches!(
            avatars.poll_event(),
            Some(AvatarEvent::Changed { avatar: None, .. })
        ),
        "a picture that does not match its id"
    );
    // An empty metadata item: the contact took their picture down.
    s.handle_frame(&announce("c0@localhost", ""), t(8));
    pump(&mut s, &mut avatars);
    assert!(matches!(
        avatars.poll_event(),
        Some(AvatarEvent::Changed { jid, avatar: None }) if jid.as_str() == "c0@localhost"
    ));
    // Other PEP nodes and results pass through untouched.
    s.handle_frame("<message xmlns='jabber:client' from='c0@localhost' to='alice@localhost/test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:example:other'/></event></message>", t(9));
    assert!(matches!(
        &pump(&mut s, &mut avatars)[..],
        [Event::PepNotification { .. }]
    ));

    // Our own picture: the data item (named by its SHA-1, for contacts only), and once the
    // server has it, the metadata that announces it.
    sent(&mut s);
    avatars
        .publish(&mut s, &picture, "image/jpeg", 192, 192)
        .unwrap();
    let out = sent(&mut s);
    let data = out
        .iter()
        .find(|f| f.contains("urn:xmpp:avatar:data"))
        .expect("the data item is published");
    assert!(data.contains(&id) && data.contains("presence"), "{data}");
    assert!(
        !out.iter().any(|f| f.contains("urn:xmpp:avatar:metadata")),
        "not before the data"
    );
    let result = |id: &str| format!("<iq xmlns='jabber:client' type='result' id='{id}'/>");
    s.handle_frame(&result(attr(data, "id")), t(10));
    assert!(pump(&mut s, &mut avatars).is_empty());
    let out = sent(&mut s);
    let metadata = out
        .iter()
        .find(|f| f.contains("urn:xmpp:avatar:metadata"))
        .expect("then the metadata");
    assert!(
        metadata.contains(&id) && metadata.contains("image/jpeg"),
        "{metadata}"
    );
    s.handle_frame(&result(attr(metadata, "id")), t(11));
    assert!(pump(&mut s, &mut avatars).is_empty());
    assert_eq!(avatars.poll_event(), Some(AvatarEvent::Published));
    // Taking it down is an empty metadata item.
    avatars.unpublish(&mut s);
    let out = sent(&mut s);
    assert!(
        out.iter()
            .any(|f| f.contains("urn:xmpp:avatar:metadata") && !f.contains("<info")),
        "{out:?}"
    );
    // Too big, or not a picture type we show, is refused before anything is sent.
    assert!(avatars
        .publish(&mut s, &vec![0; 200 * 1024], "image/png", 1, 1)
        .is_err());
    assert!(avatars
        .publish(&mut s, b"<svg/>", "image/svg+xml", 1, 1)
        .is_err());
}
