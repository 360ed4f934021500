//! OMEMO interop with an implementation nobody on the team wrote: slixmpp-omemo (python-omemo,
//! python-oldmemo; `tests/interop/omemo_peer.py`, pinned in `tests/interop/requirements.txt`)
//! against sotto-session's native client with its OMEMO manager, through the real bridge to a
//! real Prosody. The Python peer logs in to Prosody directly (c2s, STARTTLS).
//!
//! Needs `python3` with venv and PyPI on first run (the fixture builds `target/interop/venv`);
//! without them the tests fail and say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sotto_session::native::Client;
use sotto_session::omemo::{DecryptFailure, Omemo, OmemoEvent, Trust};
use sotto_session::{BareJid, Config, Event, Subscription};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::Prosody;
use sotto_tests::pypeer::{PeerOptions, PyPeer};
use sotto_tests::scan::{all_bytes, contains};

const STEP: Duration = Duration::from_secs(20);

fn jid(s: &str) -> BareJid {
    s.parse().unwrap()
}

#[derive(Debug)]
enum Out {
    Session(Event),
    Omemo(OmemoEvent),
}

/// A native client with an OMEMO manager beside its session (the polling order of
/// `sotto_session::omemo`).
struct Ours {
    client: Client,
    omemo: Omemo,
    out: VecDeque<Out>,
    kept: VecDeque<Out>,
}

impl Ours {
    async fn login(bridge: &BridgeFixture, user: &str, resource: &str) -> Result<Self> {
        let bare = jid(&format!("{user}@localhost"));
        let omemo = Omemo::new(bare, &mut rand::rngs::OsRng);
        Self::login_with(bridge, user, resource, omemo).await
    }

    async fn login_with(
        bridge: &BridgeFixture,
        user: &str,
        resource: &str,
        omemo: Omemo,
    ) -> Result<Self> {
        let config = Config {
            jid: jid(&format!("{user}@localhost")),
            password: zeroize::Zeroizing::new(format!("{user}-pass")),
            resource: Some(resource.to_owned()),
            allow_plain: false,
            service: None,
        };
        let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
        omemo.attach(client.session());
        let mut this = Self {
            client,
            omemo,
            out: VecDeque::new(),
            kept: VecDeque::new(),
        };
        this.expect("published", |o| {
            matches!(o, Out::Omemo(OmemoEvent::Published)).then_some(())
        })
        .await?;
        Ok(this)
    }

    async fn next(&mut self, timeout: Duration) -> Result<Out> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Ok(out);
            }
            let event = self.client.next_event_within(timeout).await?;
            if let Some(event) = self.omemo.handle_event(self.client.session(), event) {
                self.out.push_back(Out::Session(event));
            }
            while let Some(event) = self.omemo.poll_event() {
                self.out.push_back(Out::Omemo(event));
            }
            self.client.flush().await?;
        }
    }

    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Out) -> Option<T>,
    ) -> Result<T> {
        // Events an earlier `expect` passed over (e.g. offline messages that arrive while we
        // wait for our publication) are looked at first, in order.
        for i in 0..self.kept.len() {
            if let Some(found) = pick(&self.kept[i]) {
                self.kept.remove(i);
                return Ok(found);
            }
        }
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let out = self
                .next(left)
                .await
                .with_context(|| format!("waiting for {what}"))?;
            if let Out::Omemo(OmemoEvent::SendFailed { reason, .. }) = &out {
                bail!("send failed while waiting for {what}: {reason}");
            }
            if let Some(found) = pick(&out) {
                return Ok(found);
            }
            if self.kept.len() < 10_000 {
                self.kept.push_back(out);
            }
        }
    }

    /// Drives the client for `wait` (e.g. while a peer is awaited), keeping its events.
    async fn pump(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next(left).await {
                Ok(out) if self.kept.len() < 10_000 => self.kept.push_back(out),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Sends and waits until it is encrypted and handed over; returns how many devices.
    async fn send(&mut self, to: &str, body: &str) -> Result<usize> {
        let id = self
            .omemo
            .send_encrypted(self.client.session(), &jid(to), body)?;
        self.client.flush().await?;
        self.expect("sent", |o| match o {
            Out::Omemo(OmemoEvent::Sent {
                id: sent, devices, ..
            }) if *sent == id => Some(*devices),
            _ => None,
        })
        .await
    }

    async fn expect_decrypted(&mut self, what: &str) -> Result<(String, u32, Trust)> {
        self.expect(what, |o| match o {
            Out::Omemo(OmemoEvent::Message {
                message,
                device,
                trust,
                ..
            }) if !message.carbon => Some(Ok((
                message.body.clone().unwrap_or_default(),
                *device,
                *trust,
            ))),
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, .. }) => Some(Err(reason.clone())),
            _ => None,
        })
        .await?
        .map_err(|reason| anyhow::anyhow!("{what}: decryption failed: {reason}"))
    }

    async fn expect_key_transport(&mut self, from_device: u32) -> Result<()> {
        self.expect("key transport", |o| match o {
            Out::Omemo(OmemoEvent::KeyTransport { device, .. }) if *device == from_device => {
                Some(())
            }
            _ => None,
        })
        .await
    }
}

/// Mutual presence subscription between our `ours` and the Python account `peer` (which
/// authorises and subscribes back automatically).
async fn befriend(ours: &mut Ours, peer_jid: &str) -> Result<()> {
    let peer = jid(peer_jid);
    ours.client.session().add_contact(&peer, None)?;
    ours.client.flush().await?;
    ours.expect("the peer's subscription request", |o| match o {
        Out::Session(Event::SubscriptionRequest { from }) if *from == peer => Some(()),
        _ => None,
    })
    .await?;
    ours.client.session().approve_subscription(&peer)?;
    ours.client.flush().await?;
    ours.expect("mutual subscription", |o| match o {
        Out::Session(Event::RosterItemUpdated(item))
            if item.jid == peer && item.subscription == Subscription::Both =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    Ok(())
}

struct World {
    prosody: Prosody,
    bridge: BridgeFixture,
    dir: std::path::PathBuf,
}

async fn world(name: &str) -> Result<World> {
    let prosody = Prosody::for_test(name, &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let dir = prosody.dir().join("peers");
    Ok(World {
        prosody,
        bridge,
        dir,
    })
}

fn body_of(v: &serde_json::Value) -> &str {
    v["body"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn we_start_the_session_and_slixmpp_omemo_reads_and_answers() -> Result<()> {
    let w = world("interop-omemo-we-start").await?;
    let mut bob = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py")).await?;
    let mut alice = Ours::login(&w.bridge, "alice", "rs").await?;
    befriend(&mut alice, "bob@localhost").await?;

    // Ours → theirs: our prekey message; python-omemo builds the session passively.
    let devices = alice
        .send("bob@localhost", "interop secret one: sotto starts")
        .await?;
    assert_eq!(devices, 1, "bob's one device");
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(body_of(&got), "interop secret one: sotto starts", "{got}");
    assert_eq!(got["encrypted"], true);
    assert_eq!(got["device"], alice.omemo.device_id());
    // python-omemo completes the session with an empty message.
    alice.expect_key_transport(bob.device()).await?;

    // Theirs → ours on the session we started.
    bob.send("alice@localhost", "interop secret two: slixmpp answers")
        .await?;
    let (body, device, trust) = alice.expect_decrypted("bob's answer").await?;
    assert_eq!(body, "interop secret two: slixmpp answers");
    assert_eq!(device, bob.device());
    assert_eq!(trust, Trust::Blind);
    let fingerprint: String = alice
        .omemo
        .devices(&jid("bob@localhost"))
        .into_iter()
        .find(|d| d.id == bob.device())
        .and_then(|d| d.fingerprint)
        .map(|f| f.to_string().replace(' ', ""))
        .unwrap_or_default();
    // Both sides show the same fingerprints (the Curve25519 form Conversations shows).
    assert_eq!(
        fingerprint,
        bob.ready["fingerprint"].as_str().unwrap_or_default()
    );
    bob.command(json!({"cmd": "devices", "jid": "alice@localhost"}))
        .await?;
    let seen = bob.expect("devices", |_| true).await?;
    let ours = alice.omemo.fingerprint().to_string().replace(' ', "");
    assert_eq!(
        seen["fingerprints"][alice.omemo.device_id().to_string()],
        ours.as_str(),
        "{seen}"
    );

    // A few more both ways, out of step.
    for i in 0..3 {
        alice
            .send("bob@localhost", &format!("interop secret a{i}"))
            .await?;
    }
    bob.send("alice@localhost", "interop secret b0").await?;
    for i in 0..3 {
        let got = bob.expect("message", |_| true).await?;
        assert_eq!(body_of(&got), format!("interop secret a{i}"));
    }
    let (body, _, _) = alice.expect_decrypted("b0").await?;
    assert_eq!(body, "interop secret b0");

    bob.quit().await?;
    alice.client.close().await?;
    w.bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slixmpp_omemo_starts_the_session_and_we_read_and_answer() -> Result<()> {
    let w = world("interop-omemo-they-start").await?;
    let mut bob = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py")).await?;
    let mut alice = Ours::login(&w.bridge, "alice", "rs").await?;
    befriend(&mut alice, "bob@localhost").await?;

    bob.send("alice@localhost", "interop secret: slixmpp starts")
        .await?;
    let (body, device, _) = alice.expect_decrypted("bob's prekey message").await?;
    assert_eq!(body, "interop secret: slixmpp starts");
    assert_eq!(device, bob.device());
    // We complete the session with a key transport message, which python-omemo accepts.
    let kt = bob.expect("key_transport", |_| true).await?;
    assert_eq!(kt["device"], alice.omemo.device_id(), "{kt}");

    alice
        .send("bob@localhost", "interop secret: sotto answers")
        .await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(body_of(&got), "interop secret: sotto answers", "{got}");
    bob.send("alice@localhost", "interop secret: and again")
        .await?;
    let (body, _, _) = alice.expect_decrypted("bob's second").await?;
    assert_eq!(body, "interop secret: and again");

    bob.quit().await?;
    alice.client.close().await?;
    w.bridge.stop().await?;
    Ok(())
}

/// The same device after a restart: account, identities, trust and sessions restored the way
/// a caller's storage would (`export_devices` / `import_device`).
fn restored(omemo: &Omemo) -> Omemo {
    use sotto_session::omemo::crypto::account::Account;
    let account = Account::from_pickle(&omemo.account().pickle()).unwrap();
    let mut copy = Omemo::with_account(
        omemo.own_jid().clone(),
        omemo.device_id(),
        account,
        &mut rand::rngs::OsRng,
    );
    for device in omemo.export_devices() {
        copy.import_device(&device).unwrap();
    }
    copy
}

/// The same device after losing its sessions (account kept, sessions and identities gone).
fn amnesiac(omemo: &Omemo) -> Omemo {
    use sotto_session::omemo::crypto::account::Account;
    let account = Account::from_pickle(&omemo.account().pickle()).unwrap();
    Omemo::with_account(
        omemo.own_jid().clone(),
        omemo.device_id(),
        account,
        &mut rand::rngs::OsRng,
    )
}

/// bob (Python) starts a session with alice (ours) and alice's completion reaches him.
async fn established(alice: &mut Ours, bob: &mut PyPeer) -> Result<()> {
    bob.send("alice@localhost", "interop secret: hello").await?;
    let (body, _, _) = alice.expect_decrypted("bob's first message").await?;
    assert_eq!(body, "interop secret: hello");
    bob.expect("key_transport", |_| true).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_messages_are_read_after_a_restart_and_prosody_keeps_no_plaintext() -> Result<()> {
    let w = world("interop-omemo-offline").await?;
    let mut bob = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py")).await?;
    let mut alice = Ours::login(&w.bridge, "alice", "rs").await?;
    befriend(&mut alice, "bob@localhost").await?;
    established(&mut alice, &mut bob).await?;
    alice
        .send("bob@localhost", "interop secret: before going offline")
        .await?;
    bob.expect("message", |_| true).await?;

    // alice goes offline; bob writes twice; Prosody stores both.
    let state = restored(&alice.omemo);
    alice.client.close().await?;
    let offline = [
        "interop secret: written while you were away",
        "interop secret: and one more",
    ];
    for text in offline {
        bob.send("alice@localhost", text).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // alice comes back with her stored state and reads both from offline storage.
    let mut alice = Ours::login_with(&w.bridge, "alice", "rs", state).await?;
    for text in offline {
        let (body, device, _) = alice.expect_decrypted("an offline message").await?;
        assert_eq!(body, text);
        assert_eq!(device, bob.device());
    }
    alice
        .send("bob@localhost", "interop secret: back again")
        .await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(body_of(&got), "interop secret: back again");

    // The leak check, with a positive control: a plaintext message is found in Prosody's
    // storage (its archive), the encrypted texts are not.
    let control = "interop plaintext control: visible to the server";
    bob.send_plain("alice@localhost", control).await?;
    alice
        .expect("the control message", |o| match o {
            Out::Session(Event::Message(m)) if m.body.as_deref() == Some(control) => Some(()),
            _ => None,
        })
        .await?;
    bob.quit().await?;
    alice.client.close().await?;
    w.bridge.stop().await?;
    let stored = all_bytes(w.prosody.data_dir())?;
    assert!(contains(&stored, control), "positive control not found");
    for secret in [
        "interop secret: hello",
        "interop secret: before going offline",
        offline[0],
        offline[1],
        "interop secret: back again",
    ] {
        assert!(
            !contains(&stored, secret),
            "{secret:?} is in Prosody's data dir"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn several_devices_each_side_and_a_device_added_and_removed_mid_conversation() -> Result<()> {
    let w = world("interop-omemo-devices").await?;
    let mut b1 = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py1")).await?;
    let mut a1 = Ours::login(&w.bridge, "alice", "rs1").await?;
    let mut a2 = Ours::login(&w.bridge, "alice", "rs2").await?;
    befriend(&mut a1, "bob@localhost").await?;
    let (a1_id, a2_id) = (a1.omemo.device_id(), a2.omemo.device_id());
    let alice_devices = b1.devices("alice@localhost").await?;
    assert!(
        alice_devices.contains(&a1_id) && alice_devices.contains(&a2_id),
        "{alice_devices:?}"
    );

    // a1 → bob's device and alice's other device.
    let n = a1
        .send("bob@localhost", "interop secret: to b1 and a2")
        .await?;
    assert_eq!(n, 2);
    let got = b1.expect("message", |_| true).await?;
    assert_eq!(body_of(&got), "interop secret: to b1 and a2");
    let carbon = a2
        .expect("a1's message as a carbon", |o| match o {
            Out::Omemo(OmemoEvent::Message {
                message, device, ..
            }) if message.carbon => Some((message.body.clone().unwrap_or_default(), *device)),
            _ => None,
        })
        .await?;
    assert_eq!(carbon, ("interop secret: to b1 and a2".to_owned(), a1_id));

    // bob → both of alice's devices.
    b1.send("alice@localhost", "interop secret: to a1 and a2")
        .await?;
    for ours in [&mut a1, &mut a2] {
        let (body, device, _) = ours.expect_decrypted("b1's message").await?;
        assert_eq!(body, "interop secret: to a1 and a2");
        assert_eq!(device, b1.device());
    }

    // bob adds a device mid-conversation; a1 learns of it and encrypts to it too.
    let mut b2 = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py2")).await?;
    let b2_id = b2.device();
    a1.expect("bob's new device list", |o| match o {
        Out::Omemo(OmemoEvent::DeviceList { jid: j, devices })
            if *j == jid("bob@localhost") && devices.contains(&b2_id) =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    let n = a1
        .send("bob@localhost", "interop secret: to b1, b2 and a2")
        .await?;
    assert_eq!(n, 3);
    for peer in [&mut b1, &mut b2] {
        let got = peer
            .expect("message", |m| {
                body_of(m) == "interop secret: to b1, b2 and a2"
            })
            .await?;
        assert_eq!(got["device"], a1_id);
    }
    b2.send("alice@localhost", "interop secret: from b2")
        .await?;
    for ours in [&mut a1, &mut a2] {
        let (body, device, _) = ours.expect_decrypted("b2's message").await?;
        assert_eq!(body, "interop secret: from b2");
        assert_eq!(device, b2_id);
    }

    // b2 is removed: it goes away and bob's list drops it; alice stops encrypting to it.
    b2.quit().await?;
    a1.kept.clear();
    b1.command(json!({"cmd": "set_device_list", "devices": [b1.device()]}))
        .await?;
    b1.expect("done", |_| true).await?;
    a1.expect("bob's shorter device list", |o| match o {
        Out::Omemo(OmemoEvent::DeviceList { jid: j, devices })
            if *j == jid("bob@localhost") && !devices.contains(&b2_id) =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    let n = a1
        .send("bob@localhost", "interop secret: b2 is gone")
        .await?;
    assert_eq!(n, 2, "b1 and a2 only");
    let got = b1
        .expect("message", |m| body_of(m) == "interop secret: b2 is gone")
        .await?;
    assert_eq!(got["device"], a1_id);

    b1.quit().await?;
    a1.client.close().await?;
    a2.client.close().await?;
    w.bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_after_many_one_sided_messages_both_ways() -> Result<()> {
    let w = world("interop-omemo-heartbeat").await?;
    let mut bob = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py")).await?;
    let mut alice = Ours::login(&w.bridge, "alice", "rs").await?;
    befriend(&mut alice, "bob@localhost").await?;
    established(&mut alice, &mut bob).await?;

    // bob writes 60 times without an answer: after 53 we send an empty message, once.
    for i in 0..60 {
        bob.send("alice@localhost", &format!("interop one-sided {i}"))
            .await?;
    }
    for i in 0..60 {
        let (body, _, _) = alice.expect_decrypted("a one-sided message").await?;
        assert_eq!(body, format!("interop one-sided {i}"));
    }
    let heartbeat = bob.expect("key_transport", |_| true).await?;
    assert_eq!(heartbeat["device"], alice.omemo.device_id());
    let more: Vec<_> = bob
        .drain(Duration::from_secs(2))
        .await?
        .into_iter()
        .filter(|e| e["event"] == "key_transport")
        .collect();
    assert!(more.is_empty(), "one heartbeat only: {more:?}");

    // alice writes 60 times: python-omemo sends its heartbeat, which we read.
    for i in 0..60 {
        alice
            .send("bob@localhost", &format!("interop other way {i}"))
            .await?;
    }
    for i in 0..60 {
        let got = bob.expect("message", |_| true).await?;
        assert_eq!(body_of(&got), format!("interop other way {i}"));
    }
    alice.expect_key_transport(bob.device()).await?;

    bob.quit().await?;
    alice.client.close().await?;
    w.bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_messages_show_a_reason_and_broken_sessions_are_repaired() -> Result<()> {
    let w = world("interop-omemo-broken").await?;
    let mut bob = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py")).await?;
    let mut alice = Ours::login(&w.bridge, "alice", "rs").await?;
    befriend(&mut alice, "bob@localhost").await?;
    established(&mut alice, &mut bob).await?;

    // Two messages delivered in the reverse order of their encryption both decrypt; the
    // replay of one is reported as a duplicate (and is no reason to repair anything).
    for body in [
        "interop secret: first written",
        "interop secret: second written",
    ] {
        bob.command(json!({"cmd": "hold", "to": "alice@localhost", "body": body}))
            .await?;
        bob.expect("held", |_| true).await?;
    }
    bob.command(json!({"cmd": "release", "order": "reverse"}))
        .await?;
    bob.expect("done", |_| true).await?;
    for expected in [
        "interop secret: second written",
        "interop secret: first written",
    ] {
        let (body, _, _) = alice.expect_decrypted("a reordered message").await?;
        assert_eq!(body, expected);
    }
    bob.command(json!({"cmd": "replay"})).await?;
    bob.expect("done", |_| true).await?;
    let reason = alice
        .expect("the replay", |o| match o {
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, .. }) => Some(reason.clone()),
            Out::Omemo(OmemoEvent::Message { .. }) => panic!("a replay decrypted"),
            _ => None,
        })
        .await?;
    assert!(
        matches!(
            reason,
            DecryptFailure::Decryption(
                sotto_session::omemo::crypto::session::DecryptionError::Duplicate { .. }
            )
        ),
        "{reason:?}"
    );
    assert!(!reason.calls_for_repair());

    // A flipped bit in the payload: the key decrypts, the body does not.
    bob.command(json!({"cmd": "send_tampered", "to": "alice@localhost",
        "body": "interop secret: tampered payload", "part": "payload"}))
        .await?;
    let reason = alice
        .expect("the payload failure", |o| match o {
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, device, .. }) => {
                Some((reason.clone(), *device))
            }
            Out::Omemo(OmemoEvent::Message { .. }) => panic!("a tampered payload decrypted"),
            _ => None,
        })
        .await?;
    assert!(
        matches!(reason.0, DecryptFailure::Payload(_)),
        "{:?}",
        reason.0
    );
    assert_eq!(reason.1, Some(bob.device()));
    bob.send("alice@localhost", "interop secret: after the payload")
        .await?;
    let (body, _, _) = alice.expect_decrypted("the next message").await?;
    assert_eq!(body, "interop secret: after the payload");

    // A flipped bit in the key: the MAC fails; we say so and offer bob a fresh session
    // (a prekey message), which python-omemo accepts in place of the old one.
    bob.command(json!({"cmd": "send_tampered", "to": "alice@localhost",
        "body": "interop secret: tampered key", "part": "key"}))
        .await?;
    let reason = alice
        .expect("the MAC failure", |o| match o {
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, .. }) => Some(reason.clone()),
            Out::Omemo(OmemoEvent::Message { .. }) => panic!("a tampered key decrypted"),
            _ => None,
        })
        .await?;
    assert!(reason.calls_for_repair(), "{reason:?}");
    assert!(reason.to_string().contains("MAC"), "{reason}");
    // The repair needs a round trip (bob's bundle): keep alice running meanwhile.
    let (kt, ()) = tokio::join!(
        bob.expect("key_transport", |_| true),
        alice.pump(Duration::from_secs(5))
    );
    let kt = kt?;
    assert_eq!(kt["device"], alice.omemo.device_id());
    bob.send("alice@localhost", "interop secret: after the repair")
        .await?;
    let (body, _, _) = alice
        .expect_decrypted("the message after the repair")
        .await?;
    assert_eq!(body, "interop secret: after the repair");
    alice
        .send("bob@localhost", "interop secret: repaired both ways")
        .await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(body_of(&got), "interop secret: repaired both ways");

    // alice loses her sessions (same device and identity): bob's next message cannot be
    // read; we say why and repair, and his following message reads again.
    let forgetful = amnesiac(&alice.omemo);
    alice.client.close().await?;
    let mut alice = Ours::login_with(&w.bridge, "alice", "rs", forgetful).await?;
    bob.send("alice@localhost", "interop secret: lost on arrival")
        .await?;
    let reason = alice
        .expect("the no-session failure", |o| match o {
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(reason, DecryptFailure::NoSession);
    let (kt, ()) = tokio::join!(
        bob.expect("key_transport", |_| true),
        alice.pump(Duration::from_secs(5))
    );
    assert_eq!(kt?["device"], alice.omemo.device_id());
    bob.send("alice@localhost", "interop secret: readable again")
        .await?;
    let (body, _, _) = alice
        .expect_decrypted("the message after the repair")
        .await?;
    assert_eq!(body, "interop secret: readable again");

    // python-omemo's own repair (`replace_sessions`): a new session announced by an empty
    // prekey message, which we accept in place of ours and complete.
    bob.command(json!({"cmd": "replace_sessions", "jid": "alice@localhost"}))
        .await?;
    let (done, ()) = tokio::join!(
        bob.expect("done", |_| true),
        alice.pump(Duration::from_secs(3))
    );
    done?;
    alice.expect_key_transport(bob.device()).await?;
    bob.expect("key_transport", |_| true).await?;
    alice
        .send("bob@localhost", "interop secret: on their new session")
        .await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(body_of(&got), "interop secret: on their new session");
    bob.send("alice@localhost", "interop secret: and back")
        .await?;
    let (body, _, _) = alice
        .expect_decrypted("bob's message on his new session")
        .await?;
    assert_eq!(body, "interop secret: and back");

    bob.quit().await?;
    alice.client.close().await?;
    w.bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_was_offline_reads_what_it_missed_from_the_archive() -> Result<()> {
    use sotto_session::omemo::crypto::session::DecryptionError;
    let w = world("interop-omemo-archive").await?;
    let mut bob = PyPeer::start(&w.prosody, PeerOptions::fixture(&w.dir, "bob", "py")).await?;
    let mut a1 = Ours::login(&w.bridge, "alice", "rs1").await?;
    let a2 = Ours::login(&w.bridge, "alice", "rs2").await?;
    befriend(&mut a1, "bob@localhost").await?;
    let seen = bob.devices("alice@localhost").await?;
    assert!(seen.contains(&a2.omemo.device_id()), "{seen:?}");

    // a2 goes away; bob writes; a1 reads it live, so Prosody keeps no offline copy for a2 —
    // only the archive has it.
    let state = restored(&a2.omemo);
    a2.client.close().await?;
    let text = "interop secret: written while the tablet was off";
    bob.send("alice@localhost", text).await?;
    let (body, _, _) = a1.expect_decrypted("bob's message, live").await?;
    assert_eq!(body, text);

    let mut a2 = Ours::login_with(&w.bridge, "alice", "rs2", state).await?;
    a2.omemo.set_archive_decryption(true);
    let query = a2
        .client
        .session()
        .archive_query(&jid("bob@localhost"), None, 50)?;
    a2.client.flush().await?;
    let (body, device) = a2
        .expect("the archived message", |o| match o {
            Out::Omemo(OmemoEvent::ArchivedMessage {
                request,
                message,
                device,
                ..
            }) if *request == query => Some((message.body.clone().unwrap_or_default(), *device)),
            Out::Omemo(OmemoEvent::ArchivedDecryptionFailed {
                request, reason, ..
            }) if *request == query => Some((format!("FAILED: {reason}"), 0)),
            _ => None,
        })
        .await?;
    assert_eq!(body, text);
    assert_eq!(device, bob.device());

    // a1 read it live: for a1 the archived copy is a duplicate, and says so.
    a1.omemo.set_archive_decryption(true);
    let query = a1
        .client
        .session()
        .archive_query(&jid("bob@localhost"), None, 50)?;
    a1.client.flush().await?;
    let reason = a1
        .expect("the archived duplicate", |o| match o {
            Out::Omemo(OmemoEvent::ArchivedDecryptionFailed {
                request, reason, ..
            }) if *request == query => Some(reason.clone()),
            _ => None,
        })
        .await?;
    assert!(
        matches!(
            reason,
            DecryptFailure::Decryption(DecryptionError::Duplicate { .. })
        ),
        "{reason:?}"
    );

    // The archive changed nothing that matters: the conversation goes on for both.
    bob.send("alice@localhost", "interop secret: after the catch-up")
        .await?;
    for ours in [&mut a1, &mut a2] {
        let (body, _, _) = ours.expect_decrypted("the next message").await?;
        assert_eq!(body, "interop secret: after the catch-up");
    }
    bob.quit().await?;
    a1.client.close().await?;
    a2.client.close().await?;
    w.bridge.stop().await?;
    Ok(())
}
