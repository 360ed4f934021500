//! sotto-session's native client through the real bridge to a real Prosody.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use sotto_session::native::{Client, WaitError};
use sotto_session::{BareJid, Config, Direction, Event, LoginError, Subscription};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::{Authentication, Prosody, ProsodyOptions};
use zeroize_free::password;

/// Passwords for tests (no zeroize dependency needed here).
mod zeroize_free {
    pub fn password(p: &str) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(p.to_owned())
    }
}

const STEP: Duration = Duration::from_secs(10);

fn prosody(name: &str) -> Result<Prosody> {
    Prosody::for_test(name, &["alice", "bob"])
}

fn jid(s: &str) -> BareJid {
    s.parse()
        .unwrap_or_else(|_| unreachable!("test JIDs are valid"))
}

async fn login(bridge: &BridgeFixture, user: &str, resource: &str) -> Result<Client> {
    let config = Config {
        jid: jid(&format!("{user}@localhost")),
        password: password(&format!("{user}-pass")),
        resource: Some(resource.to_owned()),
        allow_plain: false,
        service: None,
    };
    let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
    let bound = client
        .wait_online(STEP)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(bound.to_string(), format!("{user}@localhost/{resource}"));
    Ok(client)
}

/// Waits for the first event matching `pick`, skipping others.
async fn expect<T>(
    client: &mut Client,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = client
            .next_event_within(left)
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if let Some(found) = pick(&event) {
            return Ok(found);
        }
    }
}

/// Collects events for a while (to prove something does NOT happen).
async fn events_for(client: &mut Client, duration: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + duration;
    while let Ok(event) = client
        .next_event_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        events.push(event);
    }
    events
}

async fn befriend(alice: &mut Client, bob: &mut Client) -> Result<()> {
    let bob_jid = jid("bob@localhost");
    let alice_jid = jid("alice@localhost");
    alice.session().add_contact(&bob_jid, Some("Bob"))?;
    alice.flush().await?;
    expect(bob, "alice's subscription request", |e| match e {
        Event::SubscriptionRequest { from } if *from == alice_jid => Some(()),
        _ => None,
    })
    .await?;
    bob.session().approve_subscription(&alice_jid)?;
    bob.session().add_contact(&alice_jid, None)?;
    bob.flush().await?;
    expect(alice, "bob's subscription request", |e| match e {
        Event::SubscriptionRequest { from } if *from == bob_jid => Some(()),
        _ => None,
    })
    .await?;
    alice.session().approve_subscription(&bob_jid)?;
    alice.flush().await?;
    expect(alice, "mutual subscription", |e| match e {
        Event::RosterItemUpdated(item)
            if item.jid == bob_jid && item.subscription == Subscription::Both =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    expect(bob, "mutual subscription", |e| match e {
        Event::RosterItemUpdated(item)
            if item.jid == alice_jid && item.subscription == Subscription::Both =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_login_subscriptions_messages_receipts() -> Result<()> {
    let prosody = prosody("session-basics")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut alice = login(&bridge, "alice", "laptop").await?;
    // Prosody's hashed storage keeps SCRAM-SHA-1 keys only, so that is what it offers.
    assert_eq!(alice.session().authenticated_with(), Some("SCRAM-SHA-1"));
    let mut bob = login(&bridge, "bob", "phone").await?;
    befriend(&mut alice, &mut bob).await?;

    // The roster, fetched afresh, shows the contact with its name.
    let mut alice2 = login(&bridge, "alice", "tablet").await?;
    let roster = expect(&mut alice2, "roster", |e| match e {
        Event::Roster(items) => Some(items.clone()),
        _ => None,
    })
    .await?;
    assert!(
        roster.iter().any(|i| i.jid == jid("bob@localhost")
            && i.name.as_deref() == Some("Bob")
            && i.subscription == Subscription::Both),
        "{roster:?}"
    );

    // alice → bob, with a receipt back and a carbon to alice's other device.
    let id = alice
        .session()
        .send_chat(&jid("bob@localhost"), "hello <bob> & friends")?;
    expect(&mut alice, "server ack", |e| {
        matches!(e, Event::MessageAcked { id: a } if *a == id).then_some(())
    })
    .await?;
    let message = expect(&mut bob, "alice's message", |e| match e {
        Event::Message(m) if m.direction == Direction::Incoming => Some(m.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(message.body.as_deref(), Some("hello <bob> & friends"));
    assert_eq!(message.id.as_deref(), Some(id.as_str()));
    assert_eq!(message.peer, jid("alice@localhost"));
    expect(&mut alice, "receipt", |e| {
        matches!(e, Event::Receipt { id: r, .. } if *r == id).then_some(())
    })
    .await?;
    let carbon = expect(&mut alice2, "carbon of the sent message", |e| match e {
        Event::Message(m) if m.carbon => Some(m.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(carbon.direction, Direction::Outgoing);
    assert_eq!(carbon.peer, jid("bob@localhost"));
    assert_eq!(carbon.body.as_deref(), Some("hello <bob> & friends"));

    // bob → alice's bare JID: delivered to alice (highest priority) and carbon-copied to the other.
    bob.session()
        .send_chat(&jid("alice@localhost"), "hi both")?;
    bob.flush().await?;
    let mut seen = 0;
    for client in [&mut alice, &mut alice2] {
        let m = expect(client, "bob's reply", |e| match e {
            Event::Message(m) if m.body.as_deref() == Some("hi both") => Some(m.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(m.direction, Direction::Incoming);
        seen += 1;
    }
    assert_eq!(seen, 2);

    // Chat states.
    bob.session()
        .send_chat_state(&jid("alice@localhost"), sotto_session::ChatState::Composing);
    bob.flush().await?;
    expect(&mut alice, "typing notification", |e| {
        matches!(
            e,
            Event::ChatState {
                state: sotto_session::ChatState::Composing,
                ..
            }
        )
        .then_some(())
    })
    .await?;

    for client in [alice, alice2, bob] {
        client.close().await?;
    }
    bridge.stop().await?;
    Ok(())
}

/// With a password store that can run any SCRAM variant, Prosody also offers SCRAM-SHA-256; we
/// prefer it, and the login through the bridge completes with the server signature verified.
#[tokio::test(flavor = "multi_thread")]
async fn scram_sha256_is_preferred_when_offered() -> Result<()> {
    let prosody = Prosody::start_with_authentication(
        ProsodyOptions {
            dir: sotto_tests::test_dir("session-scram-sha256")?,
            domain: "localhost".into(),
            websocket: false,
            plaintext_c2s: false,
        },
        Authentication::Plain,
    )?;
    prosody.register("alice", "alice-pass")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut alice = login(&bridge, "alice", "sha256").await?;
    assert_eq!(alice.session().authenticated_with(), Some("SCRAM-SHA-256"));
    // A wrong password fails with the same mechanism, clearly.
    let config = Config {
        jid: jid("alice@localhost"),
        password: password("not-alice-pass"),
        resource: None,
        allow_plain: false,
        service: None,
    };
    let mut wrong = Client::connect(&bridge.ws_url(), config, None).await?;
    match wrong.wait_online(STEP).await {
        Err(WaitError::Login(LoginError::WrongPassword)) => {}
        other => bail!("expected a wrong-password error, got {other:?}"),
    }
    alice.close().await?;
    Ok(())
}

/// Roster versioning (RFC 6121 §2.6): a client that saved its roster and version gets
/// "unchanged" from Prosody and keeps its saved roster; after a change it gets the new roster.
#[tokio::test(flavor = "multi_thread")]
async fn roster_versioning_reuses_a_saved_roster() -> Result<()> {
    let prosody = prosody("session-roster-ver")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut alice = login(&bridge, "alice", "one").await?;
    alice
        .session()
        .add_contact(&jid("bob@localhost"), Some("Bob"))?;
    alice.flush().await?;
    expect(&mut alice, "bob in the roster", |e| match e {
        Event::RosterItemUpdated(item) if item.jid == jid("bob@localhost") => Some(()),
        _ => None,
    })
    .await?;
    // The subscription request makes a second push (ask="subscribe"); let them all arrive.
    let _ = events_for(&mut alice, Duration::from_secs(1)).await;
    let version = alice
        .session()
        .roster_version()
        .context("Prosody versions rosters, so a version must be known")?
        .to_owned();
    let mut saved: Vec<_> = alice.session().roster().cloned().collect();
    alice.close().await?;

    // A marker entry the server never had: it survives only if the server says "unchanged".
    let mut ghost = saved[0].clone();
    ghost.jid = jid("ghost@localhost");
    saved.push(ghost);
    let reconnect = |version: String, saved: Vec<_>| {
        let bridge = &bridge;
        async move {
            let config = Config {
                jid: jid("alice@localhost"),
                password: password("alice-pass"),
                resource: Some("two".into()),
                allow_plain: false,
                service: None,
            };
            let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
            client.session().restore_roster(version, saved);
            let roster = expect(&mut client, "the roster", |e| match e {
                Event::Roster(items) => Some(items.clone()),
                _ => None,
            })
            .await?;
            anyhow::Ok((client, roster))
        }
    };
    let (mut client, roster) = reconnect(version.clone(), saved.clone()).await?;
    let jids: Vec<String> = roster.iter().map(|i| i.jid.to_string()).collect();
    assert_eq!(
        jids,
        ["bob@localhost", "ghost@localhost"],
        "the saved roster is reused"
    );
    assert_eq!(client.session().roster_version(), Some(version.as_str()));

    // Change the roster, then come back with the old version: the server sends the new roster.
    client
        .session()
        .add_contact(&jid("carol@localhost"), None)?;
    client.flush().await?;
    expect(&mut client, "carol in the roster", |e| match e {
        Event::RosterItemUpdated(item) if item.jid == jid("carol@localhost") => Some(()),
        _ => None,
    })
    .await?;
    let _ = events_for(&mut client, Duration::from_secs(1)).await;
    let newer = client.session().roster_version().map(str::to_owned);
    assert_ne!(
        newer.as_deref(),
        Some(version.as_str()),
        "a push carries the new version"
    );
    client.close().await?;
    let (client, roster) = reconnect(version, saved).await?;
    let jids: Vec<String> = roster.iter().map(|i| i.jid.to_string()).collect();
    assert_eq!(
        jids,
        ["bob@localhost", "carol@localhost"],
        "a stale version gets the roster anew"
    );
    client.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_domain_are_clear_errors() -> Result<()> {
    let prosody = prosody("session-errors")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let config = Config {
        jid: jid("alice@localhost"),
        password: password("not-the-password"),
        resource: None,
        allow_plain: false,
        service: None,
    };
    let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
    match client.wait_online(STEP).await {
        Err(WaitError::Login(LoginError::WrongPassword)) => {}
        other => bail!("expected a wrong-password error, got {other:?}"),
    }
    let config = Config {
        jid: jid("alice@elsewhere.example"),
        password: password("x"),
        resource: None,
        allow_plain: false,
        service: None,
    };
    let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
    match client.wait_online(STEP).await {
        Err(WaitError::Stream(e)) if e.condition == "host-unknown" => {}
        other => bail!("expected host-unknown, got {other:?}"),
    }
    bridge.stop().await?;
    Ok(())
}

/// Kill the WebSocket mid-conversation: the session resumes on a new connection, the message
/// sent to us meanwhile arrives exactly once, and what we sent while offline is delivered once.
#[tokio::test(flavor = "multi_thread")]
async fn resume_after_a_dropped_websocket_loses_and_duplicates_nothing() -> Result<()> {
    let prosody = prosody("session-resume")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut alice = login(&bridge, "alice", "laptop").await?;
    let mut bob = login(&bridge, "bob", "phone").await?;
    befriend(&mut alice, &mut bob).await?;
    let _ = events_for(&mut alice, Duration::from_millis(300)).await;
    assert!(
        alice.session().is_resumable(),
        "Prosody offers XEP-0198 resumption"
    );

    alice.drop_connection();
    bob.session()
        .send_chat(&jid("alice@localhost"), "while you were away")?;
    bob.flush().await?;
    let queued = alice
        .session()
        .send_chat(&jid("bob@localhost"), "written offline")?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    alice.reconnect().await?;
    let resumed = expect(&mut alice, "resumption", |e| match e {
        Event::Online { resumed, .. } => Some(*resumed),
        _ => None,
    })
    .await?;
    assert!(resumed, "the session must resume, not start anew");
    let events = events_for(&mut alice, Duration::from_secs(2)).await;
    let copies = events
        .iter()
        .filter(
            |e| matches!(e, Event::Message(m) if m.body.as_deref() == Some("while you were away")),
        )
        .count();
    assert_eq!(copies, 1, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MessageAcked { id } if *id == queued)),
        "{events:?}"
    );
    let got = events_for(&mut bob, Duration::from_secs(2)).await;
    let copies = got
        .iter()
        .filter(|e| matches!(e, Event::Message(m) if m.body.as_deref() == Some("written offline")))
        .count();
    assert_eq!(copies, 1, "{got:?}");
    alice.close().await?;
    bob.close().await?;
    bridge.stop().await?;
    Ok(())
}

/// PEP as OMEMO will use it: publish with publish-options, fetch from another account,
/// notifications through `+notify`, retract, delete; archive paging; blocking.
#[tokio::test(flavor = "multi_thread")]
async fn pep_archive_and_blocking() -> Result<()> {
    use sotto_session::PepItem;
    const NODE: &str = "eu.siacs.conversations.axolotl.devicelist";
    let prosody = prosody("session-pep")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut alice = login(&bridge, "alice", "laptop").await?;
    let mut bob = login(&bridge, "bob", "phone").await?;
    befriend(&mut alice, &mut bob).await?;

    // bob wants device-list notifications (+notify in his caps), then re-announces presence.
    bob.session().advertise_feature(&format!("{NODE}+notify"));
    bob.session()
        .set_presence(sotto_session::Availability::Available, None);
    bob.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let list = |id: &str| {
        format!("<list xmlns='eu.siacs.conversations.axolotl'><device id='{id}'/></list>")
            .parse::<minidom::Element>()
            .unwrap_or_else(|_| unreachable!())
    };
    let request = alice.session().pep_publish(
        NODE,
        "current",
        list("1234"),
        &[("pubsub#access_model", "open")],
    )?;
    expect(&mut alice, "publish done", |e| {
        matches!(e, Event::RequestDone { request: r } if *r == request).then_some(())
    })
    .await?;
    let items: Vec<PepItem> = expect(&mut bob, "device-list notification", |e| match e {
        Event::PepNotification {
            from, node, items, ..
        } if from.as_str() == "alice@localhost" && node == NODE => Some(items.clone()),
        _ => None,
    })
    .await?;
    assert!(
        items[0]
            .payload
            .as_ref()
            .is_some_and(|p| p.children().any(|d| d.attr("id") == Some("1234"))),
        "{items:?}"
    );

    // A fresh fetch by someone else sees the current item.
    let request = bob.session().pep_fetch(&jid("alice@localhost"), NODE)?;
    let items = expect(&mut bob, "fetched items", |e| match e {
        Event::PepItems {
            request: r, items, ..
        } if *r == request => Some(items.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id.as_deref(), Some("current"));

    // Republishing with a different access model reconfigures the node (precondition path).
    let request = alice.session().pep_publish(
        NODE,
        "current",
        list("5678"),
        &[("pubsub#access_model", "presence")],
    )?;
    expect(&mut alice, "republish done", |e| match e {
        Event::RequestDone { request: r } if *r == request => Some(Ok(())),
        Event::RequestFailed {
            request: r,
            condition,
        } if *r == request => Some(Err(condition.clone())),
        _ => None,
    })
    .await?
    .map_err(|c| anyhow::anyhow!("republish failed: {c}"))?;

    // Retract and delete.
    let request = alice.session().pep_retract(NODE, "current")?;
    expect(&mut alice, "retract done", |e| {
        matches!(e, Event::RequestDone { request: r } if *r == request).then_some(())
    })
    .await?;
    let request = alice.session().pep_delete(NODE)?;
    expect(&mut alice, "delete done", |e| {
        matches!(e, Event::RequestDone { request: r } if *r == request).then_some(())
    })
    .await?;
    let request = bob.session().pep_fetch(&jid("alice@localhost"), NODE)?;
    expect(&mut bob, "fetch of a deleted node fails", |e| {
        matches!(e, Event::RequestFailed { request: r, .. } if *r == request).then_some(())
    })
    .await?;

    // Archive: five messages, fetched in pages of two, oldest page last.
    for i in 0..5 {
        bob.session()
            .send_chat(&jid("alice@localhost"), &format!("archived {i}"))?;
    }
    bob.flush().await?;
    let _ = events_for(&mut alice, Duration::from_secs(1)).await;
    let mut before: Option<String> = None;
    let mut bodies = Vec::new();
    loop {
        let request = alice
            .session()
            .archive_query(&jid("bob@localhost"), before.as_deref(), 2)?;
        let mut page = Vec::new();
        let (complete, first) = loop {
            match alice.next_event_within(STEP).await? {
                Event::ArchivedMessage {
                    request: r,
                    message,
                    ..
                } if r == request => {
                    page.push(message.body.unwrap_or_default());
                }
                Event::ArchiveFinished {
                    request: r,
                    complete,
                    first,
                } if r == request => break (complete, first),
                _ => {}
            }
        };
        assert!(page.len() <= 2);
        page.extend(bodies);
        bodies = page;
        if complete || first.is_none() {
            break;
        }
        before = first;
    }
    let archived: Vec<&String> = bodies
        .iter()
        .filter(|b| b.starts_with("archived"))
        .collect();
    assert_eq!(
        archived,
        [
            "archived 0",
            "archived 1",
            "archived 2",
            "archived 3",
            "archived 4"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .iter()
        .collect::<Vec<_>>()
    );

    // Blocking: alice blocks bob; bob's messages no longer arrive.
    let request = alice.session().set_blocked(&jid("bob@localhost"), true)?;
    expect(&mut alice, "block done", |e| {
        matches!(e, Event::RequestDone { request: r } if *r == request).then_some(())
    })
    .await?;
    alice.session().fetch_block_list()?;
    let list = expect(&mut alice, "block list", |e| match e {
        Event::BlockList(list) => Some(list.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(list, vec![jid("bob@localhost")]);
    bob.session()
        .send_chat(&jid("alice@localhost"), "can you hear me")?;
    bob.flush().await?;
    let seen = events_for(&mut alice, Duration::from_secs(1)).await;
    assert!(
        !seen.iter().any(
            |e| matches!(e, Event::Message(m) if m.body.as_deref() == Some("can you hear me"))
        ),
        "{seen:?}"
    );
    alice.close().await?;
    bob.close().await?;
    bridge.stop().await?;
    Ok(())
}
