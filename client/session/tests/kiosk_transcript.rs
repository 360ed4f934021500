//! Temporary (kiosk) OMEMO devices over session cores, wired through a fake server with a PEP
//! store: the ordering "record, then publish", failures, the retirement deadline and records
//! that do not open. No network; the same flows against Prosody are in tests/tests/kiosk_devices.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use minidom::Element;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_session::omemo::temporary::{
    KdfParams, RetireFailure, Role, TemporaryDevices, TemporaryEvent, NODE, NS,
};
use sotto_session::omemo::{xml, Omemo, OmemoEvent};
use sotto_session::{BareJid, Config, Event, Instant, Session};

const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0'/>";
const FEATURES_PRE: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const FEATURES_POST: &str = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const PASSWORD: &str = "correct horse battery";

fn jid(s: &str) -> BareJid {
    s.parse().unwrap()
}

struct Dev {
    full: String,
    bare: String,
    session: Session,
    omemo: Omemo,
    kiosk: TemporaryDevices,
    omemo_events: Vec<OmemoEvent>,
    kiosk_events: Vec<TemporaryEvent>,
}

impl Dev {
    fn kiosk_events(&mut self) -> Vec<TemporaryEvent> {
        std::mem::take(&mut self.kiosk_events)
    }
}

/// A server with a PEP store. `refuse` makes publishing to one node fail; `silent` drops every
/// IQ unanswered.
#[derive(Default)]
struct World {
    devs: Vec<Dev>,
    pep: HashMap<(String, String), Element>,
    wire: Vec<String>,
    refuse: Option<&'static str>,
    silent: bool,
}

fn login(user: &str, resource: &str, seed: u64, role: Role, password: &str) -> Dev {
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
    let mut omemo = Omemo::new(jid(&bare), &mut rng);
    omemo.attach(&mut session);
    let kiosk = TemporaryDevices::new(role, &mut omemo, password, KdfParams::MINIMUM, &mut rng);
    assert!(omemo.is_publication_held());
    let t = Instant::from_millis(0);
    session.handle_connected(t);
    session.handle_frame(OPEN, t);
    session.handle_frame(FEATURES_PRE, t);
    session.handle_frame("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", t);
    session.handle_frame(OPEN, t);
    session.handle_frame(FEATURES_POST, t);
    let frames: Vec<String> = std::iter::from_fn(|| session.poll_transmit()).collect();
    let bind: Element = frames
        .iter()
        .find(|f| f.contains("xmpp-bind"))
        .unwrap()
        .parse()
        .unwrap();
    let id = bind.attr("id").unwrap();
    let full = format!("{bare}/{resource}");
    session.handle_frame(&format!("<iq xmlns='jabber:client' type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{full}</jid></bind></iq>"), t);
    Dev {
        full,
        bare,
        session,
        omemo,
        kiosk,
        omemo_events: Vec::new(),
        kiosk_events: Vec::new(),
    }
}

fn serialize(e: &Element) -> String {
    let mut out = Vec::new();
    e.write_to(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

impl World {
    fn add(&mut self, dev: Dev) -> usize {
        self.devs.push(dev);
        self.devs.len() - 1
    }

    fn get(&self, owner: &str, node: &str) -> Option<&Element> {
        self.pep.get(&(owner.to_owned(), node.to_owned()))
    }

    fn list(&self, owner: &str) -> Vec<u32> {
        self.get(owner, xml::DEVICE_LIST_NODE)
            .map(|l| xml::parse_device_list(l).unwrap())
            .unwrap_or_default()
    }

    fn deliver(&mut self, to_bare: &str, frame: &str) {
        let t = Instant::from_millis(1);
        for d in &mut self.devs {
            if d.bare == to_bare {
                d.session.handle_frame(frame, t);
            }
        }
    }

    /// Runs until nobody has anything left to send, in the documented polling order.
    fn run(&mut self) {
        for _ in 0..100 {
            let mut frames = Vec::new();
            for (i, d) in self.devs.iter_mut().enumerate() {
                while let Some(event) = d.session.poll_event() {
                    let Some(event) = d.kiosk.handle_event(&mut d.session, &mut d.omemo, event)
                    else {
                        continue;
                    };
                    let _: Option<Event> = d.omemo.handle_event(&mut d.session, event);
                }
                d.kiosk_events
                    .extend(std::iter::from_fn(|| d.kiosk.poll_event()));
                d.omemo_events
                    .extend(std::iter::from_fn(|| d.omemo.poll_event()));
                while let Some(frame) = d.session.poll_transmit() {
                    frames.push((i, frame));
                }
            }
            if frames.is_empty() {
                return;
            }
            for (i, frame) in frames {
                self.wire.push(frame.clone());
                if !self.silent {
                    self.route(i, &frame);
                }
            }
        }
        panic!("the world does not settle");
    }

    fn route(&mut self, from: usize, frame: &str) {
        let Ok(iq) = frame.parse::<Element>() else {
            return;
        };
        if iq.name() != "iq" {
            return;
        }
        let sender_full = self.devs[from].full.clone();
        let sender_bare = self.devs[from].bare.clone();
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let owner = iq
            .attr("to")
            .map(str::to_owned)
            .unwrap_or_else(|| sender_bare.clone());
        let reply = |world: &mut World, payload: &str, kind: &str| {
            let text = format!("<iq xmlns='jabber:client' type='{kind}' id='{id}' from='{owner}' to='{sender_full}'>{payload}</iq>");
            world.deliver(&sender_bare, &text);
        };
        let error = |condition: &str| {
            format!("<error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")
        };
        if let Some(pubsub) = iq.get_child("pubsub", PUBSUB) {
            if let Some(publish) = pubsub.get_child("publish", PUBSUB) {
                let node = publish.attr("node").unwrap().to_owned();
                if self.refuse == Some(node.as_str()) {
                    return reply(self, &error("not-allowed"), "error");
                }
                let payload = publish
                    .get_child("item", PUBSUB)
                    .and_then(|i| i.children().next())
                    .unwrap()
                    .clone();
                self.pep
                    .insert((sender_bare.clone(), node.clone()), payload.clone());
                reply(self, "", "result");
                if node == xml::DEVICE_LIST_NODE {
                    let notification = format!(
                        "<message xmlns='jabber:client' from='{sender_bare}'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='{node}'><item id='current'>{}</item></items></event></message>",
                        serialize(&payload)
                    );
                    self.deliver(&sender_bare, &notification);
                }
            } else if let Some(items) = pubsub.get_child("items", PUBSUB) {
                let node = items.attr("node").unwrap().to_owned();
                match self.pep.get(&(owner.clone(), node.clone())) {
                    Some(payload) => {
                        let payload = format!(
                            "<pubsub xmlns='{PUBSUB}'><items node='{node}'><item id='current'>{}</item></items></pubsub>",
                            serialize(payload)
                        );
                        reply(self, &payload, "result");
                    }
                    None => reply(self, &error("item-not-found"), "error"),
                }
            }
        } else if let Some(owner_ops) = iq.get_child("pubsub", PUBSUB_OWNER) {
            if let Some(delete) = owner_ops.get_child("delete", PUBSUB_OWNER) {
                let node = delete.attr("node").unwrap().to_owned();
                match self.pep.remove(&(sender_bare.clone(), node)) {
                    Some(_) => reply(self, "", "result"),
                    None => reply(self, &error("item-not-found"), "error"),
                }
            } else {
                reply(self, "", "result");
            }
        } else if matches!(iq.attr("type"), Some("get" | "set")) {
            reply(self, "", "result");
        }
    }
}

fn position(wire: &[String], pred: impl Fn(&str) -> bool) -> usize {
    wire.iter()
        .position(|f| pred(f))
        .unwrap_or_else(|| panic!("no such frame"))
}

#[test]
fn a_temporary_device_is_recorded_sealed_before_it_is_published() {
    let mut world = World::default();
    let k = world.add(login("alice", "kiosk", 1, Role::Temporary, PASSWORD));
    world.run();
    let dev = &mut world.devs[k];
    let device = dev.omemo.device_id();
    assert_eq!(
        dev.kiosk_events(),
        vec![TemporaryEvent::Recorded, TemporaryEvent::Ready]
    );
    assert!(dev
        .omemo_events
        .iter()
        .any(|e| matches!(e, OmemoEvent::Published)));
    assert_eq!(world.list("alice@localhost"), vec![device]);

    // On the wire: the record's publish (whitelist, one item) comes before any OMEMO publish.
    let record = position(&world.wire, |f| f.contains("<publish ") && f.contains(NODE));
    let omemo = position(&world.wire, |f| {
        f.contains("<publish ") && f.contains("eu.siacs.conversations.axolotl")
    });
    assert!(record < omemo, "published before recording");
    let frame = &world.wire[record];
    assert!(frame.contains(">whitelist<"), "{frame}");
    assert!(frame.contains("pubsub#max_items"), "{frame}");
    // The record is opaque: no id, no password, in what the server stores.
    let stored = serialize(world.get("alice@localhost", NODE).unwrap());
    assert!(stored.contains(NS));
    assert!(!stored.contains(&device.to_string()), "{stored}");
    assert!(!stored.contains(PASSWORD), "{stored}");
    assert!(!frame.contains(&device.to_string()), "{frame}");
}

#[test]
fn a_temporary_device_that_cannot_be_recorded_is_never_published() {
    let mut world = World {
        refuse: Some(NODE),
        ..World::default()
    };
    let k = world.add(login("alice", "kiosk", 2, Role::Temporary, PASSWORD));
    world.run();
    let dev = &mut world.devs[k];
    assert_eq!(
        dev.kiosk_events(),
        vec![
            TemporaryEvent::RecordFailed {
                condition: "not-allowed".into()
            },
            TemporaryEvent::Ready
        ]
    );
    assert!(dev.omemo.is_publication_held());
    assert!(!dev.omemo.is_published());
    assert!(world.list("alice@localhost").is_empty());
    assert!(!world
        .wire
        .iter()
        .any(|f| f.contains("<publish ") && f.contains("eu.siacs.conversations.axolotl")));

    // The caller may still decide to publish (knowingly, without the safety net).
    let dev = &mut world.devs[k];
    dev.omemo.release_publication(&mut dev.session);
    world.run();
    let device = world.devs[k].omemo.device_id();
    assert_eq!(world.list("alice@localhost"), vec![device]);
}

#[test]
fn retiring_removes_the_device_its_bundle_and_its_record_entry_and_stops_re_adding() {
    let mut world = World::default();
    let p = world.add(login("alice", "laptop", 3, Role::Permanent, PASSWORD));
    world.run();
    let k = world.add(login("alice", "kiosk", 4, Role::Temporary, PASSWORD));
    world.run();
    let laptop = world.devs[p].omemo.device_id();
    let temp = world.devs[k].omemo.device_id();
    let mut both = world.list("alice@localhost");
    both.sort_unstable();
    let mut expected = vec![laptop, temp];
    expected.sort_unstable();
    assert_eq!(both, expected);
    world.devs[k].kiosk_events();

    let dev = &mut world.devs[k];
    dev.kiosk.retire(
        &mut dev.session,
        &mut dev.omemo,
        Instant::from_millis(10),
        Duration::from_secs(10),
    );
    world.run();
    assert_eq!(world.devs[k].kiosk_events(), vec![TemporaryEvent::Retired]);
    assert_eq!(world.list("alice@localhost"), vec![laptop]);
    assert!(world
        .get("alice@localhost", &xml::bundle_node(temp))
        .is_none());
    // The retired device saw its list without itself and did not put itself back; the laptop
    // kept its own id. A later login finds nothing to clean up.
    let n = world.add(login("alice", "phone", 5, Role::Permanent, PASSWORD));
    world.run();
    assert_eq!(world.devs[n].kiosk_events(), vec![TemporaryEvent::Ready]);
    assert!(!world.list("alice@localhost").contains(&temp));
}

#[test]
fn a_dead_temporary_device_is_removed_at_the_next_login_and_only_with_the_password() {
    let mut world = World::default();
    let k = world.add(login("alice", "kiosk", 6, Role::Temporary, PASSWORD));
    world.run();
    let temp = world.devs[k].omemo.device_id();
    world.devs.remove(k); // the tab died

    // Another password (changed since): reported, nothing removed, the record left alone.
    let before = serialize(world.get("alice@localhost", NODE).unwrap());
    let o = world.add(login(
        "alice",
        "other",
        7,
        Role::Permanent,
        "another password",
    ));
    world.run();
    assert_eq!(
        world.devs[o].kiosk_events(),
        vec![TemporaryEvent::RecordUnreadable, TemporaryEvent::Ready]
    );
    assert!(world.list("alice@localhost").contains(&temp));
    assert_eq!(
        serialize(world.get("alice@localhost", NODE).unwrap()),
        before
    );

    let p = world.add(login("alice", "laptop", 8, Role::Permanent, PASSWORD));
    world.run();
    assert_eq!(
        world.devs[p].kiosk_events(),
        vec![
            TemporaryEvent::CleanedUp {
                devices: vec![temp]
            },
            TemporaryEvent::Ready
        ]
    );
    let list = world.list("alice@localhost");
    assert!(!list.contains(&temp), "{list:?}");
    assert!(list.contains(&world.devs[p].omemo.device_id()));
    assert!(world
        .get("alice@localhost", &xml::bundle_node(temp))
        .is_none());
}

#[test]
fn a_record_is_bound_to_its_account_and_garbage_does_not_open() {
    let mut world = World::default();
    let k = world.add(login("alice", "kiosk", 9, Role::Temporary, PASSWORD));
    world.run();
    let sealed = world.get("alice@localhost", NODE).unwrap().clone();
    world.devs.remove(k);

    let garbage = [
        sealed.clone(), // alice's record under bob's node: same password, other account
        Element::builder("devices", NS)
            .append("not base64 !")
            .build(),
        Element::builder("devices", NS).append("U1ZCMQE=").build(),
        Element::builder("other", "urn:example").build(),
    ];
    for (i, payload) in garbage.into_iter().enumerate() {
        world
            .pep
            .insert(("bob@localhost".into(), NODE.into()), payload);
        let b = world.add(login(
            "bob",
            "phone",
            10 + i as u64,
            Role::Temporary,
            PASSWORD,
        ));
        world.run();
        assert_eq!(
            world.devs[b].kiosk_events(),
            vec![
                TemporaryEvent::RecordUnreadable,
                TemporaryEvent::Recorded,
                TemporaryEvent::Ready
            ],
            "case {i}"
        );
        world.devs.remove(b);
    }
}

#[test]
fn retiring_ends_within_its_deadline_when_the_server_does_not_answer() {
    let mut world = World::default();
    let k = world.add(login("alice", "kiosk", 20, Role::Temporary, PASSWORD));
    world.run();
    world.devs[k].kiosk_events();
    world.silent = true;
    let dev = &mut world.devs[k];
    dev.kiosk.retire(
        &mut dev.session,
        &mut dev.omemo,
        Instant::from_millis(1_000),
        Duration::from_secs(5),
    );
    world.run();
    let dev = &mut world.devs[k];
    assert_eq!(dev.kiosk.poll_timeout(), Some(Instant::from_millis(6_000)));
    dev.kiosk.handle_timeout(Instant::from_millis(5_999));
    assert_eq!(dev.kiosk.poll_event(), None);
    dev.kiosk.handle_timeout(Instant::from_millis(6_000));
    assert_eq!(
        dev.kiosk.poll_event(),
        Some(TemporaryEvent::RetireFailed {
            reason: RetireFailure::Timeout
        })
    );
    assert_eq!(dev.kiosk.poll_timeout(), None);
    assert!(dev.omemo.is_retired());
}

/// A record sealed the way the manager seals it (format byte, then ids little-endian).
fn sealed_record(owner: &str, password: &str, ids: &[u32]) -> Element {
    let mut plain = vec![1u8];
    for id in ids {
        plain.extend_from_slice(&id.to_le_bytes());
    }
    let context = format!("{NODE} {owner}");
    let sealed = sotto_vault::PassphraseBox::seal(
        password.as_bytes(),
        KdfParams::MINIMUM,
        context.as_bytes(),
        &plain,
        &mut ChaCha20Rng::seed_from_u64(99),
    )
    .unwrap();
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(sealed.to_bytes());
    Element::builder("devices", NS).append(text).build()
}

#[test]
fn a_record_is_bounded_and_invalid_ids_in_it_are_ignored() {
    let mut world = World::default();
    let mut ids: Vec<u32> = (1000..1040).collect();
    ids.insert(0, 0);
    ids.insert(1, 0x8000_0000);
    ids.insert(2, 1000); // a duplicate
    world.pep.insert(
        ("alice@localhost".into(), NODE.into()),
        sealed_record("alice@localhost", PASSWORD, &ids),
    );
    let p = world.add(login("alice", "laptop", 30, Role::Permanent, PASSWORD));
    world.run();
    let events = world.devs[p].kiosk_events();
    let Some(TemporaryEvent::CleanedUp { devices }) = events.first() else {
        panic!("{events:?}");
    };
    assert_eq!(*devices, (1000..1032).collect::<Vec<u32>>());
    assert_eq!(events.get(1), Some(&TemporaryEvent::Ready));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Whatever the server returns as the record, the manager reports it unreadable (or empty)
    /// and never panics; a temporary device records itself anyway.
    #[test]
    fn arbitrary_records_never_panic(text in "\\PC{0,300}", name in "[a-z]{1,8}") {
        let mut world = World::default();
        world.pep.insert(
            ("alice@localhost".into(), NODE.into()),
            Element::builder(name.as_str(), NS).append(text.as_str()).build(),
        );
        let k = world.add(login("alice", "kiosk", 40, Role::Temporary, PASSWORD));
        world.run();
        let events = world.devs[k].kiosk_events();
        proptest::prop_assert_eq!(
            events,
            vec![
                TemporaryEvent::RecordUnreadable,
                TemporaryEvent::Recorded,
                TemporaryEvent::Ready
            ]
        );
    }
}
