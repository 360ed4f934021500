//! OMEMO managers over session cores, wired through a fake server with a PEP store: no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use minidom::Element;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_session::omemo::{xml, DecryptFailure, Omemo, OmemoEvent, SendError, Trust};
use sotto_session::{BareJid, Config, Event, Instant, Session};

const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0'/>";
const FEATURES_PRE: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const FEATURES_POST: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

fn jid(s: &str) -> BareJid {
    s.parse().unwrap()
}

struct Client {
    full: String,
    session: Session,
    omemo: Omemo,
    events: Vec<Event>,
    omemo_events: Vec<OmemoEvent>,
}

impl Client {
    fn bare(&self) -> BareJid {
        jid(self.full.split('/').next().unwrap())
    }
    fn take(&mut self) -> Vec<OmemoEvent> {
        std::mem::take(&mut self.omemo_events)
    }
}

/// A server: routes messages by bare JID, stores PEP items, notifies device-list changes.
#[derive(Default)]
struct World {
    clients: Vec<Client>,
    pep: HashMap<(String, String), Element>,
    /// Every frame a client sent, for leak checks.
    wire: Vec<String>,
    /// Frames to tamper with before delivery.
    tamper: Option<fn(&str) -> String>,
}

fn login(user: &str, resource: &str, seed: u64) -> Client {
    let bare = format!("{user}@localhost");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut session = Session::new(
        Config {
            jid: jid(&bare),
            password: zeroize::Zeroizing::new("secret".into()),
            resource: Some(resource.into()),
            allow_plain: true,
            service: None,
        },
        &mut rng,
    );
    let omemo = Omemo::new(jid(&bare), &mut rng);
    omemo.attach(&mut session);
    let t = Instant::from_millis(0);
    session.handle_connected(t);
    session.handle_frame(OPEN, t);
    session.handle_frame(FEATURES_PRE, t);
    session.handle_frame("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", t);
    session.handle_frame(OPEN, t);
    session.handle_frame(FEATURES_POST, t);
    let frames: Vec<String> = std::iter::from_fn(|| session.poll_transmit()).collect();
    let bind = frames.iter().find(|f| f.contains("xmpp-bind")).unwrap();
    let bind: Element = bind.parse().unwrap();
    let id = bind.attr("id").unwrap();
    let full = format!("{bare}/{resource}");
    session.handle_frame(&format!("<iq xmlns='jabber:client' type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{full}</jid></bind></iq>"), t);
    Client {
        full,
        session,
        omemo,
        events: Vec::new(),
        omemo_events: Vec::new(),
    }
}

fn serialize(e: &Element) -> String {
    let mut out = Vec::new();
    e.write_to(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

impl World {
    fn add(&mut self, client: Client) -> usize {
        self.clients.push(client);
        self.clients.len() - 1
    }

    fn deliver(&mut self, to_bare: &str, frame: &str) {
        let t = Instant::from_millis(1);
        for c in &mut self.clients {
            if c.full.starts_with(&format!("{to_bare}/")) || c.full == to_bare {
                c.session.handle_frame(frame, t);
            }
        }
    }

    /// Runs until nobody has anything left to send.
    fn run(&mut self) {
        for _ in 0..100 {
            let mut frames = Vec::new();
            for (i, c) in self.clients.iter_mut().enumerate() {
                while let Some(event) = c.session.poll_event() {
                    if let Some(event) = c.omemo.handle_event(&mut c.session, event) {
                        c.events.push(event);
                    }
                }
                while let Some(event) = c.omemo.poll_event() {
                    c.omemo_events.push(event);
                }
                while let Some(frame) = c.session.poll_transmit() {
                    frames.push((i, frame));
                }
            }
            if frames.is_empty() {
                return;
            }
            for (i, frame) in frames {
                self.wire.push(frame.clone());
                self.route(i, &frame);
            }
        }
        panic!("the world does not settle");
    }

    fn route(&mut self, from: usize, frame: &str) {
        let Ok(element) = frame.parse::<Element>() else {
            return;
        };
        let sender_full = self.clients[from].full.clone();
        let sender_bare = self.clients[from].bare().to_string();
        match element.name() {
            "iq" => self.route_iq(&sender_full, &sender_bare, &element),
            "message" => {
                let Some(to) = element.attr("to") else { return };
                let to_bare = to.split('/').next().unwrap().to_owned();
                let mut stanza = element.clone();
                stanza.set_attr(
                    rxml::Namespace::NONE,
                    rxml::xml_ncname!("from").into(),
                    sender_full.as_str(),
                );
                let mut text = serialize(&stanza);
                if let Some(tamper) = self.tamper {
                    if stanza.has_child("encrypted", xml::NS) {
                        text = tamper(&text);
                    }
                }
                self.deliver(&to_bare, &text);
            }
            _ => {}
        }
    }

    fn route_iq(&mut self, sender_full: &str, sender_bare: &str, iq: &Element) {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let to = iq.attr("to").map(str::to_owned);
        let from_attr = to
            .clone()
            .map(|t| format!(" from='{t}'"))
            .unwrap_or_default();
        let reply_to = |world: &mut World, payload: &str, kind: &str| {
            let text = format!("<iq xmlns='jabber:client' type='{kind}' id='{id}'{from_attr} to='{sender_full}'>{payload}</iq>");
            world.deliver(sender_bare, &text);
        };
        let Some(pubsub) = iq.get_child("pubsub", PUBSUB) else {
            if matches!(iq.attr("type"), Some("get" | "set")) {
                reply_to(self, "", "result");
            }
            return;
        };
        if let Some(publish) = pubsub.get_child("publish", PUBSUB) {
            let node = publish.attr("node").unwrap().to_owned();
            let payload = publish
                .get_child("item", PUBSUB)
                .and_then(|i| i.children().next())
                .unwrap()
                .clone();
            self.pep
                .insert((sender_bare.to_owned(), node.clone()), payload.clone());
            reply_to(self, "", "result");
            if node == xml::DEVICE_LIST_NODE {
                let notification = format!(
                    "<message xmlns='jabber:client' from='{sender_bare}'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='{node}'><item id='current'>{}</item></items></event></message>",
                    serialize(&payload)
                );
                let everyone: Vec<String> =
                    self.clients.iter().map(|c| c.bare().to_string()).collect();
                let mut seen = Vec::new();
                for bare in everyone {
                    if !seen.contains(&bare) {
                        self.deliver(&bare, &notification);
                        seen.push(bare);
                    }
                }
            }
        } else if let Some(items) = pubsub.get_child("items", PUBSUB) {
            let owner = to.clone().unwrap_or_else(|| sender_bare.to_owned());
            let node = items.attr("node").unwrap().to_owned();
            match self.pep.get(&(owner, node.clone())) {
                Some(payload) => {
                    let payload = format!(
                        "<pubsub xmlns='{PUBSUB}'><items node='{node}'><item id='current'>{}</item></items></pubsub>",
                        serialize(payload)
                    );
                    reply_to(self, &payload, "result");
                }
                None => reply_to(
                    self,
                    "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
                    "error",
                ),
            }
        }
    }
}

/// alice/laptop and bob/phone, online and published.
fn two() -> (World, usize, usize) {
    let mut world = World::default();
    let a = world.add(login("alice", "laptop", 1));
    let b = world.add(login("bob", "phone", 2));
    world.run();
    for i in [a, b] {
        let events = world.clients[i].take();
        assert!(
            events.iter().any(|e| matches!(e, OmemoEvent::Published)),
            "{events:?}"
        );
        assert!(world.clients[i].omemo.is_published());
    }
    (world, a, b)
}

fn send(world: &mut World, from: usize, to: &str, body: &str) -> String {
    let c = &mut world.clients[from];
    let id = c
        .omemo
        .send_encrypted(&mut c.session, &jid(to), body)
        .unwrap();
    world.run();
    id
}

fn decrypted(events: &[OmemoEvent]) -> Vec<(String, u32, Trust)> {
    events
        .iter()
        .filter_map(|e| match e {
            OmemoEvent::Message {
                message,
                device,
                trust,
                ..
            } => Some((message.body.clone().unwrap(), *device, *trust)),
            _ => None,
        })
        .collect()
}

#[test]
fn publishes_device_list_and_bundle_with_open_access() {
    let (world, a, _) = two();
    let alice = &world.clients[a];
    let list = world
        .pep
        .get(&("alice@localhost".into(), xml::DEVICE_LIST_NODE.into()))
        .unwrap();
    assert_eq!(
        xml::parse_device_list(list).unwrap(),
        vec![alice.omemo.device_id()]
    );
    let bundle = world
        .pep
        .get(&(
            "alice@localhost".into(),
            xml::bundle_node(alice.omemo.device_id()),
        ))
        .unwrap();
    let bundle = xml::parse_bundle(bundle).unwrap();
    assert_eq!(
        bundle.identity_key().fingerprint(),
        alice.omemo.fingerprint()
    );
    let publish = world
        .wire
        .iter()
        .find(|f| f.contains("<publish ") && f.contains("bundles:"))
        .unwrap();
    assert!(publish.contains("pubsub#access_model"), "{publish}");
    assert!(publish.contains(">open<"), "{publish}");
}

#[test]
fn encrypted_messages_both_ways_with_key_transport_and_no_plaintext_on_the_wire() {
    let (mut world, a, b) = two();
    let alice_device = world.clients[a].omemo.device_id();
    let alice_fp = world.clients[a].omemo.fingerprint();
    send(&mut world, a, "bob@localhost", "secret one");
    let bob_events = world.clients[b].take();
    assert_eq!(
        decrypted(&bob_events),
        vec![("secret one".to_owned(), alice_device, Trust::Blind)]
    );
    let fp = bob_events.iter().find_map(|e| match e {
        OmemoEvent::Message {
            fingerprint,
            message,
            ..
        } => {
            assert_eq!(message.peer, jid("alice@localhost"));
            Some(*fingerprint)
        }
        _ => None,
    });
    assert_eq!(fp, Some(alice_fp));
    // Bob answered the prekey message with a key transport; alice's session is confirmed.
    let alice_events = world.clients[a].take();
    assert!(
        alice_events.iter().any(|e| matches!(e, OmemoEvent::KeyTransport { device, .. } if *device == world.clients[b].omemo.device_id())),
        "{alice_events:?}"
    );
    assert!(alice_events
        .iter()
        .any(|e| matches!(e, OmemoEvent::Sent { devices: 1, .. })));

    send(&mut world, b, "alice@localhost", "secret two");
    assert_eq!(
        decrypted(&world.clients[a].take())
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec!["secret two"]
    );
    send(&mut world, a, "bob@localhost", "secret three");
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);

    let on_wire = world.wire.join("\n");
    for secret in ["secret one", "secret two", "secret three"] {
        assert!(!on_wire.contains(secret), "{secret} leaked");
    }
    assert!(on_wire.contains("Find more information on https://conversations.im/omemo"));
    assert!(on_wire.contains("urn:xmpp:eme:0"));
    // The devices of each side are known, with fingerprints.
    let devices = world.clients[a].omemo.devices(&jid("bob@localhost"));
    assert_eq!(devices.len(), 1);
    assert!(devices[0].has_session && devices[0].trust == Some(Trust::Blind));
}

#[test]
fn own_other_device_gets_a_copy_and_reads_it() {
    let (mut world, a, b) = two();
    let a2 = world.add(login("alice", "tablet", 3));
    world.run();
    world.clients[a2].take();
    send(&mut world, a, "bob@localhost", "to bob and my tablet");
    let sent = world.clients[a].take();
    assert!(
        sent.iter()
            .any(|e| matches!(e, OmemoEvent::Sent { devices: 2, .. })),
        "{sent:?}"
    );
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);
    // The fake server does not do carbons; deliver alice's stanza to her tablet as one.
    let stanza = world
        .wire
        .iter()
        .rev()
        .find(|f| f.contains("to='bob@localhost'") && f.contains("<payload>"))
        .unwrap()
        .clone();
    let mut inner: Element = stanza.parse().unwrap();
    inner.set_attr(
        rxml::Namespace::NONE,
        rxml::xml_ncname!("from").into(),
        "alice@localhost/laptop",
    );
    let carbon = format!(
        "<message xmlns='jabber:client' from='alice@localhost' to='alice@localhost/tablet'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>{}</forwarded></sent></message>",
        serialize(&inner)
    );
    world.deliver("alice@localhost", &carbon);
    world.run();
    let tablet = world.clients[a2].take();
    // Key transports that are not for the tablet (bob completing his session with the laptop)
    // and the tablet's own key transport to the laptop, which the server delivers back to it,
    // are nothing to report.
    assert!(
        !tablet
            .iter()
            .any(|e| matches!(e, OmemoEvent::DecryptionFailed { .. })),
        "{tablet:?}"
    );
    assert_eq!(
        decrypted(&tablet)
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec!["to bob and my tablet"]
    );
    // The laptop got the same carbon (the fake server delivers to every resource) and says why
    // it cannot read its own message.
    let laptop = world.clients[a].take();
    assert!(
        laptop.iter().any(|e| matches!(
            e,
            OmemoEvent::DecryptionFailed {
                reason: DecryptFailure::FromThisDevice,
                ..
            }
        )),
        "{laptop:?}"
    );
}

#[test]
fn contact_without_devices_fails_clearly() {
    let (mut world, a, _) = two();
    let c = &mut world.clients[a];
    let id = c
        .omemo
        .send_encrypted(&mut c.session, &jid("carol@localhost"), "hello")
        .unwrap();
    world.run();
    let events = world.clients[a].take();
    assert!(
        events.iter().any(|e| matches!(e, OmemoEvent::SendFailed { id: i, reason: SendError::NoDevices(_), .. } if *i == id)),
        "{events:?}"
    );
    let c = &mut world.clients[a];
    assert_eq!(
        c.omemo
            .send_encrypted(&mut c.session, &jid("carol@localhost"), "again"),
        Err(SendError::NoDevices(jid("carol@localhost")))
    );
    assert!(!world.wire.join("").contains("hello"));
}

fn flip_key_byte(frame: &str) -> String {
    // Corrupt the first character of the first <key>'s base64 text.
    let start = frame.find("<key ").unwrap();
    let text = start + frame[start..].find('>').unwrap() + 1 + 20;
    let mut bytes = frame.as_bytes().to_vec();
    bytes[text] = if bytes[text] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn tampered_message_is_reported_and_changes_nothing() {
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "first");
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);
    world.clients[a].take();
    world.tamper = Some(flip_key_byte);
    send(&mut world, a, "bob@localhost", "tampered");
    let events = world.clients[b].take();
    assert!(decrypted(&events).is_empty());
    let failure = events.iter().find_map(|e| match e {
        OmemoEvent::DecryptionFailed {
            message,
            reason,
            device,
        } => Some((message.body.clone(), reason.clone(), *device)),
        _ => None,
    });
    let (body, reason, device) = failure.expect("a failure event");
    assert_eq!(body.as_deref(), Some(xml::FALLBACK_BODY));
    assert_eq!(device, Some(world.clients[a].omemo.device_id()));
    assert!(
        matches!(
            reason,
            DecryptFailure::Decryption(_) | DecryptFailure::Decode(_)
        ),
        "{reason:?}"
    );
    world.tamper = None;
    send(&mut world, a, "bob@localhost", "after");
    assert_eq!(
        decrypted(&world.clients[b].take())
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec!["after"]
    );
}

#[test]
fn message_for_another_device_and_garbage_are_reported() {
    let (mut world, a, b) = two();
    let bob_device = world.clients[b].omemo.device_id();
    let other = bob_device.wrapping_add(1).max(1);
    for (xml_text, expected) in [
        (
            format!("<message xmlns='jabber:client' type='chat' from='alice@localhost/laptop' id='x1'><body>fallback</body><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='9'><key rid='{other}'>AAAA</key><iv>AAAAAAAAAAAAAAAA</iv></header><payload>AAAA</payload></encrypted></message>"),
            "not-for-us",
        ),
        (
            "<message xmlns='jabber:client' type='chat' from='alice@localhost/laptop' id='x2'><encrypted xmlns='eu.siacs.conversations.axolotl'><header/></encrypted></message>".to_owned(),
            "malformed",
        ),
        (
            format!("<message xmlns='jabber:client' type='chat' from='alice@localhost/laptop' id='x3'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='9'><key rid='{bob_device}'>MwoFAAAA</key><iv>AAAAAAAAAAAAAAAA</iv></header><payload>AAAA</payload></encrypted></message>"),
            "undecodable",
        ),
    ] {
        world.deliver("bob@localhost", &xml_text);
        world.run();
        let events = world.clients[b].take();
        let reason = events
            .iter()
            .find_map(|e| match e {
                OmemoEvent::DecryptionFailed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{expected}: {events:?}"));
        match expected {
            "not-for-us" => assert_eq!(reason, DecryptFailure::NotForThisDevice),
            "malformed" => assert!(matches!(reason, DecryptFailure::Malformed(_)), "{reason:?}"),
            _ => assert!(
                matches!(reason, DecryptFailure::Decode(_) | DecryptFailure::NoSession),
                "{reason:?}"
            ),
        }
    }
    let _ = a;
}

#[test]
fn verified_contact_gaining_a_device_needs_a_decision() {
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "hi");
    let bob_device = world.clients[b].omemo.device_id();
    world.clients[a]
        .omemo
        .verify(&jid("bob@localhost"), bob_device)
        .unwrap();
    world.clients[a].take();
    world.clients[b].take();
    // Bob adds a tablet: its list update reaches alice.
    let b2 = world.add(login("bob", "tablet", 4));
    world.run();
    let b2_device = world.clients[b2].omemo.device_id();
    let list = world.clients[a].omemo.devices(&jid("bob@localhost"));
    assert_eq!(list.len(), 2, "{list:?}");
    send(&mut world, a, "bob@localhost", "only to the verified phone");
    let events = world.clients[a].take();
    assert!(
        events.iter().any(|e| matches!(
            e,
            OmemoEvent::NewDevice { device, trust: Trust::Undecided, .. } if *device == b2_device
        )),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, OmemoEvent::Sent { devices: 1, .. })),
        "{events:?}"
    );
    assert!(decrypted(&world.clients[b2].take()).is_empty());
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);
    // Accepting it makes the next message reach the tablet too.
    world.clients[a]
        .omemo
        .accept(&jid("bob@localhost"), b2_device)
        .unwrap();
    send(&mut world, a, "bob@localhost", "now both");
    assert_eq!(decrypted(&world.clients[b2].take()).len(), 1);
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);
    // Distrusting the phone stops messages to it.
    world.clients[a]
        .omemo
        .distrust(&jid("bob@localhost"), bob_device)
        .unwrap();
    send(&mut world, a, "bob@localhost", "tablet only");
    assert!(decrypted(&world.clients[b].take()).is_empty());
    assert_eq!(decrypted(&world.clients[b2].take()).len(), 1);
    assert!(world.clients[a]
        .omemo
        .verify(&jid("bob@localhost"), 12345)
        .is_err());
}

#[test]
fn own_device_is_readded_to_a_list_that_lacks_it() {
    let (mut world, a, _) = two();
    let me = world.clients[a].omemo.device_id();
    let notification = "<message xmlns='jabber:client' from='alice@localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='eu.siacs.conversations.axolotl.devicelist'><item id='current'><list xmlns='eu.siacs.conversations.axolotl'><device id='77'/></list></item></items></event></message>";
    world.deliver("alice@localhost", notification);
    world.run();
    let list = world
        .pep
        .get(&("alice@localhost".into(), xml::DEVICE_LIST_NODE.into()))
        .unwrap();
    assert_eq!(xml::parse_device_list(list).unwrap(), vec![77, me]);
}

#[test]
fn a_device_that_lost_its_sessions_repairs_them() {
    use sotto_omemo::account::Account;
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "one");
    send(&mut world, b, "alice@localhost", "two");
    assert_eq!(decrypted(&world.clients[a].take()).len(), 1);
    world.clients[b].take();
    // Bob restarts with his identity but without sessions (what the CLI's --store keeps).
    let old = &world.clients[b].omemo;
    let account = Account::from_pickle(&old.account().pickle()).unwrap();
    let restored = Omemo::with_account(
        jid("bob@localhost"),
        old.device_id(),
        account,
        &mut ChaCha20Rng::seed_from_u64(9),
    );
    world.clients[b].omemo = restored;
    send(&mut world, a, "bob@localhost", "three");
    let events = world.clients[b].take();
    assert!(
        events.iter().any(|e| matches!(
            e,
            OmemoEvent::DecryptionFailed {
                reason: DecryptFailure::NoSession,
                ..
            }
        )),
        "{events:?}"
    );
    // Bob announced a new session; alice took it, and her next message reaches bob.
    let alice_events = world.clients[a].take();
    assert!(
        alice_events
            .iter()
            .any(|e| matches!(e, OmemoEvent::KeyTransport { .. })),
        "{alice_events:?}"
    );
    send(&mut world, a, "bob@localhost", "four");
    assert_eq!(
        decrypted(&world.clients[b].take())
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec!["four"]
    );
}

#[test]
fn exported_sessions_and_trust_survive_a_restart() {
    use sotto_omemo::account::Account;
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "one");
    send(&mut world, b, "alice@localhost", "two");
    world.clients[a].take();
    let alice_device = world.clients[a].omemo.device_id();
    world.clients[b]
        .omemo
        .verify(&jid("alice@localhost"), alice_device)
        .unwrap();
    world.clients[b].take();
    let old = &world.clients[b].omemo;
    let stored = old.export_devices();
    assert_eq!(stored.len(), 1);
    let account = Account::from_pickle(&old.account().pickle()).unwrap();
    let mut restored = Omemo::with_account(
        jid("bob@localhost"),
        old.device_id(),
        account,
        &mut ChaCha20Rng::seed_from_u64(10),
    );
    for device in &stored {
        restored.import_device(device).unwrap();
    }
    world.clients[b].omemo = restored;
    send(&mut world, a, "bob@localhost", "three");
    assert_eq!(
        decrypted(&world.clients[b].take()),
        vec![("three".to_owned(), alice_device, Trust::Verified)]
    );
    // A session pickle under another identity is refused.
    let mut wrong = stored[0].clone();
    wrong.identity[5] ^= 1;
    let mut fresh = Omemo::new(jid("bob@localhost"), &mut ChaCha20Rng::seed_from_u64(11));
    assert!(fresh.import_device(&wrong).is_err());
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Arbitrary `<encrypted/>` contents addressed to bob's device never panic and never
        /// decrypt: each yields a failure event.
        #[test]
        fn arbitrary_encrypted_elements_fail_visibly(
            sid in any::<u32>(),
            prekey in any::<bool>(),
            versioned in any::<bool>(),
            key in proptest::collection::vec(any::<u8>(), 0..200),
            iv in proptest::collection::vec(any::<u8>(), 0..20),
            payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        ) {
            let (mut world, _, b) = two();
            let rid = world.clients[b].omemo.device_id();
            let mut data = key;
            if versioned {
                data.insert(0, 0x33);
            }
            let element = xml::EncryptedElement {
                sid,
                keys: vec![xml::KeyElement { rid, prekey, data }],
                iv,
                payload,
            };
            let mut stanza = xml::message("bob@localhost", "fuzz", &element, None);
            stanza.set_attr(
                rxml::Namespace::NONE,
                rxml::xml_ncname!("from").into(),
                "mallory@localhost/x",
            );
            world.deliver("bob@localhost", &serialize(&stanza));
            world.run();
            let events = world.clients[b].take();
            prop_assert!(decrypted(&events).is_empty());
            prop_assert!(
                events.iter().any(|e| matches!(e, OmemoEvent::DecryptionFailed { .. })),
                "{:?}",
                events
            );
        }
    }
}

/// [`flip_key_byte`] for messages with a body only (key transports pass untouched).
fn flip_key_byte_of_payload_messages(frame: &str) -> String {
    if frame.contains("<payload") {
        flip_key_byte(frame)
    } else {
        frame.to_owned()
    }
}

#[test]
fn heartbeat_after_many_one_sided_messages() {
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "hello");
    world.clients[a].take();
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);
    let key_transports = |events: &[OmemoEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, OmemoEvent::KeyTransport { .. }))
            .count()
    };
    // bob completed the session when he read the prekey message; now alice writes alone.
    for i in 1..sotto_session::omemo::HEARTBEAT_AFTER {
        send(&mut world, a, "bob@localhost", &format!("one-sided {i}"));
    }
    assert_eq!(key_transports(&world.clients[a].take()), 0);
    send(&mut world, a, "bob@localhost", "the 53rd");
    assert_eq!(
        key_transports(&world.clients[a].take()),
        1,
        "bob's heartbeat after {} unanswered messages",
        sotto_session::omemo::HEARTBEAT_AFTER
    );
    // The count starts over after the heartbeat; an answer resets it too.
    for i in 0..10 {
        send(&mut world, a, "bob@localhost", &format!("more {i}"));
    }
    send(&mut world, b, "alice@localhost", "an answer");
    for i in 0..(sotto_session::omemo::HEARTBEAT_AFTER - 1) {
        send(&mut world, a, "bob@localhost", &format!("again {i}"));
    }
    assert_eq!(key_transports(&world.clients[a].take()), 0);
    assert_eq!(
        decrypted(&world.clients[b].take()).len(),
        1 + 10 + sotto_session::omemo::HEARTBEAT_AFTER as usize + 51
    );
}

#[test]
fn a_session_that_stops_verifying_is_repaired_once_until_it_works_again() {
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "one");
    send(&mut world, b, "alice@localhost", "two");
    world.clients[a].take();
    world.clients[b].take();
    let repairs = |world: &World| {
        world
            .wire
            .iter()
            .filter(|f| f.contains("bundles:") && f.contains("<items"))
            .count()
    };
    let before = repairs(&world);
    // Two messages whose MAC fails, arriving together: one repair (a bundle fetch and a
    // prekey message), not two.
    world.tamper = Some(flip_key_byte_of_payload_messages);
    let c = &mut world.clients[a];
    for body in ["broken 1", "broken 2"] {
        c.omemo
            .send_encrypted(&mut c.session, &jid("bob@localhost"), body)
            .unwrap();
    }
    world.run();
    world.tamper = None;
    let events = world.clients[b].take();
    let failures: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            OmemoEvent::DecryptionFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 2, "{events:?}");
    assert!(
        failures.iter().all(DecryptFailure::calls_for_repair),
        "{failures:?}"
    );
    assert_eq!(repairs(&world) - before, 1);
    // alice took bob's new session; her next message reads, which re-arms the repair.
    assert!(world.clients[a]
        .take()
        .iter()
        .any(|e| matches!(e, OmemoEvent::KeyTransport { .. })));
    send(&mut world, a, "bob@localhost", "works again");
    assert_eq!(
        decrypted(&world.clients[b].take())
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec!["works again"]
    );
    world.tamper = Some(flip_key_byte_of_payload_messages);
    send(&mut world, a, "bob@localhost", "broken 3");
    world.tamper = None;
    assert_eq!(repairs(&world) - before, 2);
    // Duplicates and other devices' messages are not reasons to repair.
    assert!(!DecryptFailure::NotForThisDevice.calls_for_repair());
}

#[test]
fn used_prekeys_are_kept_until_the_catch_up_is_done() {
    use sotto_omemo::account::Account;
    let (mut world, a, b) = two();
    send(&mut world, a, "bob@localhost", "one");
    assert_eq!(decrypted(&world.clients[b].take()).len(), 1);
    let prekey_frame = world
        .wire
        .iter()
        .find(|f| f.contains("to='bob@localhost'") && f.contains("prekey="))
        .unwrap()
        .clone();
    let unused = world.clients[b].omemo.account().unused_one_time_pre_keys();
    assert_eq!(
        world.clients[b]
            .omemo
            .account()
            .consumed_one_time_pre_keys(),
        1,
        "used, unpublished, kept"
    );
    assert_eq!(
        world.clients[b].omemo.account().bundle().pre_keys().len(),
        unused
    );
    let restart = |world: &mut World| {
        let old = &world.clients[b].omemo;
        let account = Account::from_pickle(&old.account().pickle()).unwrap();
        world.clients[b].omemo = Omemo::with_account(
            jid("bob@localhost"),
            old.device_id(),
            account,
            &mut ChaCha20Rng::seed_from_u64(11),
        );
    };
    // A delayed copy of the prekey message (from the archive) after a restart that lost the
    // session: the kept prekey still opens it.
    restart(&mut world);
    world.route(a, &prekey_frame);
    world.run();
    assert_eq!(
        decrypted(&world.clients[b].take())
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec!["one"]
    );
    // Once the caller says the catch-up is done, the used prekeys are gone for good (alice
    // repaired her session too, since bob's restarted one diverged: that used another).
    let held = world.clients[b]
        .omemo
        .account()
        .consumed_one_time_pre_keys();
    assert!(held >= 1);
    assert_eq!(world.clients[b].omemo.catch_up_done(), held);
    assert_eq!(
        world.clients[b]
            .omemo
            .account()
            .consumed_one_time_pre_keys(),
        0
    );
    restart(&mut world);
    world.route(a, &prekey_frame);
    world.run();
    let events = world.clients[b].take();
    assert!(
        events.iter().any(|e| matches!(
            e,
            OmemoEvent::DecryptionFailed {
                reason: DecryptFailure::Inbound(
                    sotto_omemo::account::InboundSessionError::UnknownOneTimePreKey(_)
                ),
                ..
            }
        )),
        "{events:?}"
    );
}
