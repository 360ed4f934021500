//! The organisation policy at the bridge (`[policy]`) against a real Prosody: allowed traffic
//! passes, refused traffic is answered with `<not-allowed/>` and never reaches the server (the
//! other account never receives it and nothing of it is in Prosody's storage), and the session
//! carries on — including XEP-0198 acknowledgements and resumption, whose counts must stay
//! exact across refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use anyhow::{bail, Context, Result};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::http::get;
use sotto_tests::prosody::Prosody;
use sotto_tests::wsclient::RawClient;

/// A raw client that counts the stanzas it sends and receives, as XEP-0198 does.
struct Counted {
    client: RawClient,
    sent: u32,
    received: u32,
    seen: Vec<String>,
}

fn is_stanza(frame: &str) -> bool {
    frame.starts_with("<message") || frame.starts_with("<presence") || frame.starts_with("<iq")
}

impl Counted {
    async fn login(bridge: &BridgeFixture, user: &str, resource: &str) -> Result<Self> {
        let mut client = RawClient::connect(&bridge.ws_url(), None).await?;
        client
            .login_plain("localhost", user, &format!("{user}-pass"), resource)
            .await?;
        Ok(Self {
            client,
            sent: 0,
            received: 0,
            seen: Vec::new(),
        })
    }

    async fn send(&mut self, stanza: &str) -> Result<()> {
        assert!(is_stanza(stanza));
        self.client.send(stanza).await?;
        self.sent += 1;
        Ok(())
    }

    async fn recv_until(&mut self, needle: &str) -> Result<String> {
        loop {
            let frame = self.client.recv_text().await?;
            if is_stanza(&frame) {
                self.received += 1;
            }
            self.seen.push(frame.clone());
            if frame.contains(needle) {
                return Ok(frame);
            }
        }
    }

    /// Enables resumable stream management; returns the resumption id.
    async fn enable_sm(&mut self) -> Result<String> {
        self.client
            .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
            .await?;
        let enabled = self.recv_until("<enabled").await?;
        self.sent = 0;
        self.received = 0;
        attr(&enabled, "id").context("no resumption id")
    }

    /// The server's count of our stanzas (`<r/>` → `<a h/>`).
    async fn server_h(&mut self) -> Result<u32> {
        self.client.send("<r xmlns='urn:xmpp:sm:3'/>").await?;
        let a = self.recv_until("<a ").await?;
        Ok(attr(&a, "h").context("no h")?.parse()?)
    }

    fn saw(&self, needle: &str) -> bool {
        self.seen.iter().any(|f| f.contains(needle))
    }
}

fn attr(frame: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let pattern = format!(" {name}={quote}");
        if let Some(rest) = frame.split(&pattern).nth(1) {
            return rest.split(quote).next().map(str::to_owned);
        }
    }
    None
}

/// The refusal error for the stanza `name` with `id`, from the address it was sent to.
fn assert_refusal(frame: &str, name: &str, id: &str, from: &str) {
    assert!(frame.starts_with(&format!("<{name}")), "{frame}");
    assert_eq!(attr(frame, "type").as_deref(), Some("error"), "{frame}");
    assert_eq!(attr(frame, "id").as_deref(), Some(id), "{frame}");
    assert_eq!(attr(frame, "from").as_deref(), Some(from), "{frame}");
    assert!(
        frame.contains("<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"),
        "{frame}"
    );
    assert!(frame.contains("Your organisation"), "{frame}");
}

/// Whether any file under `dir` contains `needle`.
fn stored_anywhere(dir: &Path, needle: &str) -> Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if stored_anywhere(&path, needle)? {
                return Ok(true);
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_rule_refuses_outside_addresses_and_the_session_carries_on() -> Result<()> {
    let prosody = Prosody::for_test("policy-domain", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(
        &prosody,
        None,
        "[policy]\nallowed_domains = [\"localhost\"]\n",
    )
    .await?;
    let mut bob = Counted::login(&bridge, "bob", "b1").await?;
    bob.send("<presence xmlns='jabber:client'/>").await?;
    bob.recv_until("<presence").await?;
    let mut alice = Counted::login(&bridge, "alice", "a1").await?;
    let previd = alice.enable_sm().await?;
    alice.send("<presence xmlns='jabber:client'/>").await?;
    alice.recv_until("<presence").await?;

    // Allowed: a message to the own domain.
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='ok1'><body>allowed-marker-one</body></message>")
        .await?;
    bob.recv_until("allowed-marker-one").await?;

    // Refused: a message, a subscription request, directed presence and an IQ to elsewhere.
    alice
        .send("<message xmlns='jabber:client' to='eve@elsewhere.example' type='chat' id='out1'><body>outside-marker-one</body></message>")
        .await?;
    let error = alice.recv_until("id='out1'").await?;
    assert_refusal(&error, "message", "out1", "eve@elsewhere.example");
    assert!(!error.contains("outside-marker"), "{error}");
    alice
        .send("<presence xmlns='jabber:client' to='eve@elsewhere.example' type='subscribe' id='sub1'/>")
        .await?;
    assert_refusal(
        &alice.recv_until("id='sub1'").await?,
        "presence",
        "sub1",
        "eve@elsewhere.example",
    );
    alice
        .send("<presence xmlns='jabber:client' to='room@conference.elsewhere.example/alice' id='join1'/>")
        .await?;
    assert_refusal(
        &alice.recv_until("id='join1'").await?,
        "presence",
        "join1",
        "room@conference.elsewhere.example/alice",
    );
    alice
        .send("<iq xmlns='jabber:client' type='get' to='elsewhere.example' id='iq1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    assert_refusal(
        &alice.recv_until("id='iq1'").await?,
        "iq",
        "iq1",
        "elsewhere.example",
    );

    // Allowed again: a subscription request within the domain reaches bob.
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost' type='subscribe' id='sub2'/>")
        .await?;
    let request = bob.recv_until("type='subscribe'").await?;
    assert!(request.contains("alice@localhost"), "{request}");
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='ok2'><body>allowed-marker-two</body></message>")
        .await?;
    bob.recv_until("allowed-marker-two").await?;
    assert!(!bob.saw("outside-marker"), "{:?}", bob.seen);

    // XEP-0198: the server counted exactly what alice sent, refused stanzas included.
    assert_eq!(alice.server_h().await?, alice.sent);

    // Resumption with alice's own count of received stanzas (errors included) succeeds, and
    // the session works afterwards.
    let h = alice.received;
    alice.client.vanish();
    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    let (_open, _features) = alice.open("localhost").await?;
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pass");
    alice
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
    assert!(alice.recv_text().await?.contains("<success"));
    alice.open("localhost").await?;
    alice
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' h='{h}' previd='{previd}'/>"
        ))
        .await?;
    let resumed = alice.recv_text().await?;
    assert!(resumed.contains("<resumed"), "resumption failed: {resumed}");
    alice
        .send("<message xmlns='jabber:client' to='eve@elsewhere.example' type='chat' id='out2'><body>outside-marker-two</body></message>")
        .await?;
    let error = alice.recv_until("id='out2'").await?;
    assert!(error.contains("<not-allowed"), "{error}");
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='ok3'><body>allowed-marker-three</body></message>")
        .await?;
    bob.recv_until("allowed-marker-three").await?;
    assert!(!bob.saw("outside-marker"));

    // Prosody's side: the allowed messages are in its archive, the refused ones nowhere.
    assert!(stored_anywhere(prosody.data_dir(), "allowed-marker-one")?);
    assert!(!stored_anywhere(prosody.data_dir(), "outside-marker")?);

    let metrics = get(bridge.addr(), "/metrics").await?.body;
    assert_eq!(
        metric(
            &metrics,
            "sotto_bridge_policy_refusals_total{rule=\"domain\"}"
        ),
        5,
        "{metrics}"
    );
    assert!(!metrics.contains("alice"), "no JIDs in metrics");
    bridge.stop().await?;
    Ok(())
}

const OMEMO_LEGACY: &str = "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='12345'><key rid='678'>AAAA</key><iv>AAAAAAAAAAAAAAAA</iv></header><payload>AAAA</payload></encrypted>";

#[tokio::test(flavor = "multi_thread")]
async fn e2e_rule_refuses_plaintext_bodies_only() -> Result<()> {
    let prosody = Prosody::for_test("policy-e2e", &["alice", "bob", "helpdesk"])?;
    let bridge = BridgeFixture::start(
        &prosody,
        None,
        "[policy]\nrequire_e2e = true\nexempt_addresses = [\"helpdesk@localhost\"]\n",
    )
    .await?;
    let mut bob = Counted::login(&bridge, "bob", "b1").await?;
    bob.send("<presence xmlns='jabber:client'/>").await?;
    bob.recv_until("<presence").await?;
    let mut helpdesk = Counted::login(&bridge, "helpdesk", "h1").await?;
    helpdesk.send("<presence xmlns='jabber:client'/>").await?;
    helpdesk.recv_until("<presence").await?;
    let mut alice = Counted::login(&bridge, "alice", "a1").await?;
    let _ = alice.enable_sm().await?;

    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='p1'><body>plaintext-marker</body></message>")
        .await?;
    let error = alice.recv_until("id='p1'").await?;
    assert_refusal(&error, "message", "p1", "bob@localhost");
    assert!(error.contains("end-to-end encryption"), "{error}");

    // OMEMO 0.3 and OMEMO 2 messages with a fallback body pass.
    alice
        .send(&format!("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='e1'>{OMEMO_LEGACY}<body>omemo-fallback-one</body></message>"))
        .await?;
    bob.recv_until("omemo-fallback-one").await?;
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='e2'><encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'><keys jid='bob@localhost'><key rid='2'>AAAA</key></keys></header><payload>AAAA</payload></encrypted><body>omemo-fallback-two</body></message>")
        .await?;
    bob.recv_until("omemo-fallback-two").await?;
    // Chat states and receipts carry no body and pass.
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='cs1'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await?;
    bob.recv_until("composing").await?;
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' id='rc1'><received xmlns='urn:xmpp:receipts' id='e1'/></message>")
        .await?;
    bob.recv_until("urn:xmpp:receipts").await?;
    // The exempt service address gets plaintext.
    alice
        .send("<message xmlns='jabber:client' to='helpdesk@localhost' type='chat' id='x1'><body>exempt-marker</body></message>")
        .await?;
    helpdesk.recv_until("exempt-marker").await?;
    // The session goes on: an IQ round trip.
    alice
        .send("<iq xmlns='jabber:client' type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let roster = alice.recv_until("id='roster1'").await?;
    assert_eq!(attr(&roster, "type").as_deref(), Some("result"), "{roster}");
    assert_eq!(alice.server_h().await?, alice.sent);

    assert!(!bob.saw("plaintext-marker"));
    assert!(stored_anywhere(prosody.data_dir(), "exempt-marker")?);
    assert!(stored_anywhere(prosody.data_dir(), "omemo-fallback-one")?);
    assert!(!stored_anywhere(prosody.data_dir(), "plaintext-marker")?);
    let metrics = get(bridge.addr(), "/metrics").await?.body;
    assert_eq!(
        metric(&metrics, "sotto_bridge_policy_refusals_total{rule=\"e2e\"}"),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "sotto_bridge_policy_refusals_total{rule=\"domain\"}"
        ),
        0
    );
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn group_rules_apply_to_members_only() -> Result<()> {
    let prosody = Prosody::for_test("policy-group", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(
        &prosody,
        None,
        "[policy]\n[[policy.group]]\nname = \"kiosk\"\nmembers = [\"alice@localhost\"]\nallowed_domains = [\"localhost\"]\n",
    )
    .await?;
    let mut alice = Counted::login(&bridge, "alice", "a1").await?;
    let mut bob = Counted::login(&bridge, "bob", "b1").await?;
    alice
        .send("<message xmlns='jabber:client' to='eve@elsewhere.example' type='chat' id='g1'><body>kiosk-outside-marker</body></message>")
        .await?;
    assert_refusal(
        &alice.recv_until("id='g1'").await?,
        "message",
        "g1",
        "eve@elsewhere.example",
    );
    // Bob is not in the group: his message is relayed, and Prosody (which has no s2s here)
    // answers with its own error ("Communication with remote domains is not enabled"), not
    // the bridge's.
    bob.send("<message xmlns='jabber:client' to='eve@elsewhere.example' type='chat' id='g2'><body>member-of-no-group</body></message>")
        .await?;
    let answer = bob.recv_until("id='g2'").await?;
    if answer.contains("Your organisation") || !answer.contains("remote domains") {
        bail!("bob's message was refused by the bridge: {answer}");
    }
    assert_eq!(attr(&answer, "type").as_deref(), Some("error"), "{answer}");
    assert!(!stored_anywhere(
        prosody.data_dir(),
        "kiosk-outside-marker"
    )?);
    let metrics = get(bridge.addr(), "/metrics").await?.body;
    assert_eq!(
        metric(
            &metrics,
            "sotto_bridge_policy_refusals_total{rule=\"domain\"}"
        ),
        1
    );
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_rules_refuse_other_services_and_large_files() -> Result<()> {
    let prosody = Prosody::for_test("policy-upload", &["alice"])?;
    let bridge = BridgeFixture::start(
        &prosody,
        None,
        "[policy]\nupload_service = \"upload.localhost\"\nmax_upload_bytes = 1000\n",
    )
    .await?;
    let mut alice = Counted::login(&bridge, "alice", "a1").await?;
    let request = |id: &str, to: &str, size: u64| {
        format!(
            "<iq xmlns='jabber:client' type='get' id='{id}' to='{to}'><request xmlns='urn:xmpp:http:upload:0' filename='report.pdf' size='{size}' content-type='application/pdf'/></iq>"
        )
    };
    alice
        .send(&request("u1", "files.elsewhere.example", 10))
        .await?;
    assert_refusal(
        &alice.recv_until("id='u1'").await?,
        "iq",
        "u1",
        "files.elsewhere.example",
    );
    alice.send(&request("u2", "upload.localhost", 5000)).await?;
    let too_big = alice.recv_until("id='u2'").await?;
    assert_refusal(&too_big, "iq", "u2", "upload.localhost");
    assert!(too_big.contains("files this large"), "{too_big}");
    // Within the rules the request reaches Prosody, which has no upload service in this
    // fixture and answers with its own error.
    alice.send(&request("u3", "upload.localhost", 999)).await?;
    let relayed = alice.recv_until("id='u3'").await?;
    assert!(!relayed.contains("Your organisation"), "{relayed}");
    let metrics = get(bridge.addr(), "/metrics").await?.body;
    assert_eq!(
        metric(
            &metrics,
            "sotto_bridge_policy_refusals_total{rule=\"upload_service\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "sotto_bridge_policy_refusals_total{rule=\"upload_size\"}"
        ),
        1
    );
    bridge.stop().await?;
    Ok(())
}

mod core {
    //! The same through Sotto's own session core (sotto-session's native driver): refusals
    //! arrive as `MessageError { condition: "not-allowed" }` for the right message, and a
    //! dropped connection with a resumption re-sends exactly what the server has not counted —
    //! nothing refused turns up anywhere, nothing is duplicated.

    use std::time::Duration;

    use anyhow::{Context, Result};
    use sotto_session::native::Client;
    use sotto_session::{BareJid, Config, Direction, Event};
    use sotto_tests::bridge::BridgeFixture;
    use sotto_tests::prosody::Prosody;

    const STEP: Duration = Duration::from_secs(10);

    fn jid(s: &str) -> BareJid {
        s.parse().unwrap()
    }

    async fn login(bridge: &BridgeFixture, user: &str) -> Result<Client> {
        let config = Config {
            jid: jid(&format!("{user}@localhost")),
            password: zeroize::Zeroizing::new(format!("{user}-pass")),
            resource: Some("core".into()),
            allow_plain: false,
            service: None,
        };
        let mut client = Client::connect(&bridge.ws_url(), config, None).await?;
        client
            .wait_online(STEP)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(client)
    }

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

    fn errors_for(events: &[Event], id: &str) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::MessageError { id: Some(i), .. } if i == id))
            .count()
    }

    fn bodies(events: &[Event], body: &str) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::Message(m) if m.direction == Direction::Incoming && m.body.as_deref() == Some(body)))
            .count()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn session_core_sees_refusals_and_resumes_exactly() -> Result<()> {
        let prosody = Prosody::for_test("policy-core", &["alice", "bob"])?;
        let bridge = BridgeFixture::start(
            &prosody,
            None,
            "[policy]\nallowed_domains = [\"localhost\"]\n",
        )
        .await?;
        let mut bob = login(&bridge, "bob").await?;
        let mut alice = login(&bridge, "alice").await?;
        let eve = jid("eve@elsewhere.example");
        let bob_jid = jid("bob@localhost");

        let out1 = alice.session().send_chat(&eve, "core-outside-1")?;
        let condition = expect(&mut alice, "the refusal", |e| match e {
            Event::MessageError {
                id: Some(id),
                condition,
            } if *id == out1 => Some(condition.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(condition, "not-allowed");
        let in1 = alice.session().send_chat(&bob_jid, "core-inside-1")?;
        expect(&mut alice, "server ack", |e| {
            matches!(e, Event::MessageAcked { id } if *id == in1).then_some(())
        })
        .await?;
        expect(&mut bob, "the allowed message", |e| {
            matches!(e, Event::Message(m) if m.body.as_deref() == Some("core-inside-1"))
                .then_some(())
        })
        .await?;
        let _ = events_for(&mut alice, Duration::from_millis(500)).await;
        assert!(alice.session().is_resumable());

        // Offline: one refused and one allowed message wait in the session; after the
        // resumption each is sent once.
        alice.drop_connection();
        let out2 = alice.session().send_chat(&eve, "core-outside-2")?;
        let in2 = alice.session().send_chat(&bob_jid, "core-inside-2")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.reconnect().await?;
        let resumed = expect(&mut alice, "resumption", |e| match e {
            Event::Online { resumed, .. } => Some(*resumed),
            _ => None,
        })
        .await?;
        assert!(resumed, "the session must resume across a refusal");
        let events = events_for(&mut alice, Duration::from_secs(2)).await;
        assert_eq!(errors_for(&events, &out2), 1, "{events:?}");
        assert_eq!(errors_for(&events, &out1), 0, "{events:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::MessageAcked { id } if *id == in2)),
            "{events:?}"
        );
        let got = events_for(&mut bob, Duration::from_secs(2)).await;
        assert_eq!(bodies(&got, "core-inside-2"), 1, "{got:?}");
        assert_eq!(bodies(&got, "core-inside-1"), 0, "duplicate: {got:?}");
        assert!(
            !got.iter().any(|e| matches!(e, Event::Message(m) if m.body.as_deref().is_some_and(|b| b.starts_with("core-outside")))),
            "{got:?}"
        );
        alice.close().await?;
        bob.close().await?;
        bridge.stop().await?;
        Ok(())
    }
}
