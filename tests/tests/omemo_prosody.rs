//! OMEMO over sotto-session's native client, through the real bridge to a real Prosody: device
//! lists and bundles via PEP, encrypted messages both ways, key transport, a visible failure for
//! a message this device cannot read, and no plaintext in Prosody's storage.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sotto_session::native::Client;
use sotto_session::omemo::{DecryptFailure, Omemo, OmemoEvent, Trust};
use sotto_session::{BareJid, Config, Event, Subscription};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::{Prosody, ProsodyOptions};
use sotto_tests::scan::{all_bytes, contains};

const STEP: Duration = Duration::from_secs(15);

fn jid(s: &str) -> BareJid {
    s.parse()
        .unwrap_or_else(|_| unreachable!("test JIDs are valid"))
}

#[derive(Debug)]
enum Out {
    Session(Event),
    Omemo(OmemoEvent),
}

/// A native client with an OMEMO manager beside its session (the polling order of
/// `sotto_session::omemo`).
struct OmemoClient {
    client: Client,
    omemo: Omemo,
    out: VecDeque<Out>,
}

impl OmemoClient {
    async fn login(bridge: &BridgeFixture, user: &str, resource: &str) -> Result<Self> {
        let bare = jid(&format!("{user}@localhost"));
        let config = Config {
            jid: bare.clone(),
            password: zeroize::Zeroizing::new(format!("{user}-pass")),
            resource: Some(resource.to_owned()),
            allow_plain: false,
            service: None,
        };
        let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
        let omemo = Omemo::new(bare, &mut rand::rngs::OsRng);
        omemo.attach(client.session());
        let mut this = Self {
            client,
            omemo,
            out: VecDeque::new(),
        };
        this.expect("online", |o| {
            matches!(o, Out::Session(Event::Online { .. })).then_some(())
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
        }
    }

    async fn send(&mut self, to: &str, body: &str) -> Result<String> {
        let id = self
            .omemo
            .send_encrypted(self.client.session(), &jid(to), body)?;
        self.client.flush().await?;
        Ok(id)
    }

    async fn expect_decrypted(&mut self, what: &str) -> Result<(String, u32, Trust)> {
        self.expect(what, |o| match o {
            Out::Omemo(OmemoEvent::Message {
                message,
                device,
                trust,
                ..
            }) => Some((message.body.clone().unwrap_or_default(), *device, *trust)),
            Out::Omemo(OmemoEvent::DecryptionFailed { reason, .. }) => {
                Some((format!("FAILED: {reason}"), 0, Trust::Distrusted))
            }
            _ => None,
        })
        .await
    }
}

async fn befriend(alice: &mut OmemoClient, bob: &mut OmemoClient) -> Result<()> {
    let bob_jid = jid("bob@localhost");
    let alice_jid = jid("alice@localhost");
    alice.client.session().add_contact(&bob_jid, Some("Bob"))?;
    alice.client.flush().await?;
    bob.expect("alice's subscription request", |o| match o {
        Out::Session(Event::SubscriptionRequest { from }) if *from == alice_jid => Some(()),
        _ => None,
    })
    .await?;
    bob.client.session().approve_subscription(&alice_jid)?;
    bob.client.session().add_contact(&alice_jid, None)?;
    bob.client.flush().await?;
    alice
        .expect("bob's subscription request", |o| match o {
            Out::Session(Event::SubscriptionRequest { from }) if *from == bob_jid => Some(()),
            _ => None,
        })
        .await?;
    alice.client.session().approve_subscription(&bob_jid)?;
    alice.client.flush().await?;
    for (client, other) in [(&mut *alice, &bob_jid), (&mut *bob, &alice_jid)] {
        client
            .expect("mutual subscription", |o| match o {
                Out::Session(Event::RosterItemUpdated(item))
                    if item.jid == *other && item.subscription == Subscription::Both =>
                {
                    Some(())
                }
                _ => None,
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_chat_both_ways_through_bridge_and_prosody_leaves_no_plaintext() -> Result<()> {
    let prosody = Prosody::start(ProsodyOptions {
        dir: sotto_tests::test_dir("omemo-prosody")?,
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;

    let mut alice = OmemoClient::login(&bridge, "alice", "laptop").await?;
    let mut bob = OmemoClient::login(&bridge, "bob", "phone").await?;
    for client in [&mut alice, &mut bob] {
        client
            .expect("device list and bundle published", |o| {
                matches!(o, Out::Omemo(OmemoEvent::Published)).then_some(())
            })
            .await?;
    }
    befriend(&mut alice, &mut bob).await?;

    let secrets = [
        "omemo secret alpha: alice starts",
        "omemo secret beta: bob answers",
        "omemo secret gamma: alice again",
        "omemo secret delta: bob is away",
    ];

    // alice → bob: a prekey message; bob answers with a key transport.
    alice.send("bob@localhost", secrets[0]).await?;
    alice
        .expect("sent", |o| {
            matches!(o, Out::Omemo(OmemoEvent::Sent { devices: 1, .. })).then_some(())
        })
        .await?;
    let (body, device, trust) = bob.expect_decrypted("alice's first message").await?;
    assert_eq!(body, secrets[0]);
    assert_eq!(device, alice.omemo.device_id());
    assert_eq!(trust, Trust::Blind);
    let alice_fp = alice.omemo.fingerprint();
    let seen = bob.omemo.devices(&jid("alice@localhost"));
    assert!(
        seen.iter()
            .any(|d| d.id == alice.omemo.device_id() && d.fingerprint == Some(alice_fp)),
        "{seen:?}"
    );
    let bob_device = bob.omemo.device_id();
    alice
        .expect("bob's key transport", |o| {
            matches!(o, Out::Omemo(OmemoEvent::KeyTransport { device, .. }) if *device == bob_device)
                .then_some(())
        })
        .await?;

    // bob → alice, then alice → bob on the established session.
    bob.send("alice@localhost", secrets[1]).await?;
    let (body, device, _) = alice.expect_decrypted("bob's answer").await?;
    assert_eq!(body, secrets[1]);
    assert_eq!(device, bob_device);
    alice.send("bob@localhost", secrets[2]).await?;
    let (body, _, _) = bob.expect_decrypted("alice's second message").await?;
    assert_eq!(body, secrets[2]);

    // bob goes offline; alice's next message waits in Prosody's offline store.
    bob.client.close().await?;
    alice.send("bob@localhost", secrets[3]).await?;
    alice
        .expect("sent while bob is offline", |o| {
            matches!(o, Out::Omemo(OmemoEvent::Sent { .. })).then_some(())
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stored = all_bytes(prosody.data_dir())?;
    assert!(
        contains(&stored, "conversations.im/omemo"),
        "the offline message (fallback body) should be in Prosody's storage"
    );
    for secret in secrets {
        assert!(
            !contains(&stored, secret),
            "{secret:?} is stored in plaintext"
        );
    }

    // A new OMEMO device of bob's (no state carried over) gets the offline message and says
    // clearly that it was not encrypted for it.
    let mut bob2 = OmemoClient::login(&bridge, "bob", "phone").await?;
    let (failed_body, reason) = bob2
        .expect("visible failure for the stored message", |o| match o {
            Out::Omemo(OmemoEvent::DecryptionFailed {
                message, reason, ..
            }) => Some((message.body.clone(), reason.clone())),
            Out::Omemo(OmemoEvent::Message { message, .. }) => {
                Some((message.body.clone(), DecryptFailure::NoSession))
            }
            _ => None,
        })
        .await?;
    assert_eq!(reason, DecryptFailure::NotForThisDevice, "{failed_body:?}");
    assert!(failed_body
        .unwrap_or_default()
        .contains("conversations.im/omemo"));

    alice.client.close().await?;
    bob2.client.close().await?;
    bridge.stop().await?;
    Ok(())
}
