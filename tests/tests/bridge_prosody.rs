//! The bridge against a real Prosody: relaying, framing, STARTTLS upstream, and every rule that
//! keeps it from being an open relay or a resource sink.

use std::time::Duration;

use anyhow::{bail, Result};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::http::get;
use sotto_tests::prosody::Prosody;
use sotto_tests::wsclient::{Frame, RawClient};

fn prosody(name: &str) -> Result<Prosody> {
    Prosody::for_test(name, &["alice", "bob"])
}

/// Receives until the WebSocket closes; returns the text frames seen and the close code.
async fn drain(client: &mut RawClient) -> Result<(Vec<String>, Option<u16>)> {
    let mut texts = Vec::new();
    loop {
        match client.recv().await? {
            Frame::Text(t) => texts.push(t),
            Frame::Closed(code) => return Ok((texts, code)),
        }
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn login_roster_message_and_clean_close() -> Result<()> {
    let prosody = prosody("bridge-login")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;

    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    let (open, features) = alice.open("localhost").await?;
    assert!(
        open.starts_with("<open") && open.contains("urn:ietf:params:xml:ns:xmpp-framing"),
        "{open}"
    );
    assert!(
        open.contains("from='localhost'") || open.contains("from=\"localhost\""),
        "{open}"
    );
    // The bridge did STARTTLS itself: the client sees the post-TLS features with SASL.
    assert!(!features.contains("starttls"), "{features}");
    assert!(features.contains("SCRAM-SHA-1"), "{features}");
    assert!(!features.contains("-PLUS"), "{features}");
    drop(alice);

    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    let alice_jid = alice
        .login_plain("localhost", "alice", "alice-pass", "a1")
        .await?;
    assert!(alice_jid.starts_with("alice@localhost/"), "{alice_jid}");
    let mut bob = RawClient::connect(&bridge.ws_url(), None).await?;
    bob.login_plain("localhost", "bob", "bob-pass", "b1")
        .await?;

    alice
        .send("<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let roster = alice.recv_until("r1").await?;
    assert!(
        roster.contains("type='result'") || roster.contains("type=\"result\""),
        "{roster}"
    );
    assert!(
        roster.contains("xmlns='jabber:client'") || roster.contains("xmlns=\"jabber:client\""),
        "{roster}"
    );

    bob.send("<presence xmlns='jabber:client'/>").await?;
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='m1'><body>hello &amp; welcome</body></message>")
        .await?;
    let message = bob.recv_until("<body>").await?;
    assert!(message.contains("hello &amp; welcome"), "{message}");
    assert!(
        message.contains("from='alice@localhost/a1'")
            || message.contains("from=\"alice@localhost/a1\""),
        "{message}"
    );

    alice
        .send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await?;
    let (frames, code) = drain(&mut alice).await?;
    assert!(frames.iter().any(|f| f.starts_with("<close")), "{frames:?}");
    assert_eq!(code, Some(1000));

    let metrics = get(bridge.addr(), "/metrics").await?;
    assert!(
        metric(&metrics.body, "sotto_bridge_connections_total") >= 3,
        "{}",
        metrics.body
    );
    assert!(
        !metrics.body.contains("alice"),
        "metrics must not carry JIDs"
    );
    assert!(
        !metrics.body.contains("127.0.0.1"),
        "metrics must not carry addresses"
    );
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_domains_are_refused_without_connecting() -> Result<()> {
    let prosody = prosody("bridge-host-unknown")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    for to in [
        Some("example.org"),
        Some("127.0.0.1"),
        Some("[::1]"),
        Some("localhost:5222"),
        Some(""),
        None,
    ] {
        let mut client = RawClient::connect(&bridge.ws_url(), None).await?;
        let open = match to {
            Some(to) => format!(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{to}' version='1.0'/>"
            ),
            None => "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0'/>".to_owned(),
        };
        client.send(&open).await?;
        let (frames, code) = drain(&mut client).await?;
        assert_eq!(frames.len(), 3, "{to:?}: {frames:?}");
        assert!(frames[0].starts_with("<open"), "{frames:?}");
        assert!(frames[1].contains("<host-unknown"), "{to:?}: {frames:?}");
        assert!(frames[2].starts_with("<close"), "{frames:?}");
        assert_eq!(code, Some(1000));
    }
    let metrics = get(bridge.addr(), "/metrics").await?.body;
    assert_eq!(
        metric(&metrics, "sotto_bridge_upstream_connect_seconds_count"),
        0,
        "{metrics}"
    );
    assert!(
        metrics.contains("sotto_bridge_connections_refused_total{reason=\"host_unknown\"} 6"),
        "{metrics}"
    );
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_stream_error_and_a_clean_close() -> Result<()> {
    let prosody = prosody("bridge-bad-input")?;
    let bridge =
        BridgeFixture::start(&prosody, None, "[limits]\nmax_stanza_bytes = 4096\n").await?;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "mismatched tags",
            "<message xmlns='jabber:client'><body>x</message>".into(),
            "not-well-formed",
        ),
        ("not xml", "hello".into(), "not-well-formed"),
        (
            "doctype",
            "<!DOCTYPE lol [<!ENTITY a 'aaaa'>]><message xmlns='jabber:client'>&a;</message>"
                .into(),
            "restricted-xml",
        ),
        (
            "unknown entity",
            "<message xmlns='jabber:client'><body>&lol;</body></message>".into(),
            "restricted-xml",
        ),
        (
            "no namespace",
            "<message><body>x</body></message>".into(),
            "invalid-namespace",
        ),
        (
            "too large",
            format!(
                "<message xmlns='jabber:client'><body>{}</body></message>",
                "x".repeat(5000)
            ),
            "policy-violation",
        ),
        (
            "deep nesting",
            format!(
                "<message xmlns='jabber:client'>{}{}</message>",
                "<a>".repeat(200),
                "</a>".repeat(200)
            ),
            "policy-violation",
        ),
    ];
    for (name, frame, condition) in cases {
        let mut client = RawClient::connect(&bridge.ws_url(), None).await?;
        client
            .login_plain("localhost", "alice", "alice-pass", "bad")
            .await?;
        client.send(&frame).await?;
        let (frames, code) = drain(&mut client).await?;
        let error = frames.iter().find(|f| f.contains("stream:error"));
        let Some(error) = error else {
            bail!("{name}: no stream error in {frames:?}")
        };
        assert!(error.contains(&format!("<{condition}")), "{name}: {error}");
        assert!(
            frames.last().is_some_and(|f| f.starts_with("<close")),
            "{name}: {frames:?}"
        );
        assert!(code.is_some(), "{name}: no WebSocket close frame");
    }
    // A binary frame.
    let mut client = RawClient::connect(&bridge.ws_url(), None).await?;
    client
        .login_plain("localhost", "alice", "alice-pass", "bin")
        .await?;
    client.send_binary(b"<presence/>").await?;
    let (frames, _) = drain(&mut client).await?;
    assert!(
        frames.iter().any(|f| f.contains("stream:error")),
        "{frames:?}"
    );
    // Other sessions are untouched: a fresh login still works.
    let mut client = RawClient::connect(&bridge.ws_url(), None).await?;
    client
        .login_plain("localhost", "alice", "alice-pass", "ok")
        .await?;
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_timeout_origin_subprotocol_and_connection_caps() -> Result<()> {
    let prosody = prosody("bridge-limits")?;
    let bridge = BridgeFixture::start(
        &prosody,
        None,
        "[limits]\nhandshake_timeout_secs = 1\nmax_connections_per_ip = 2\n",
    )
    .await?;
    // No <open/> in time.
    let mut silent = RawClient::connect(&bridge.ws_url(), None).await?;
    let (frames, _) = drain(&mut silent).await?;
    assert!(
        frames.iter().any(|f| f.contains("<connection-timeout")),
        "{frames:?}"
    );

    // Foreign origin refused; own origin accepted.
    let foreign = RawClient::connect(&bridge.ws_url(), Some("http://evil.example")).await;
    assert!(foreign.is_err(), "a foreign Origin must be refused");
    let own = RawClient::connect(&bridge.ws_url(), Some(&bridge.http_url())).await?;

    // Subprotocol required.
    let plain = tokio_tungstenite::connect_async(bridge.ws_url()).await;
    assert!(
        plain.is_err(),
        "a WebSocket without the xmpp subprotocol must be refused"
    );

    // Per-IP cap of 2: `own` holds one slot.
    let second = RawClient::connect(&bridge.ws_url(), None).await?;
    let third = RawClient::connect(&bridge.ws_url(), None).await;
    assert!(
        third.is_err(),
        "the third connection from one IP must be refused"
    );
    drop(second);
    drop(own);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = RawClient::connect(&bridge.ws_url(), None).await;
    assert!(again.is_ok(), "slots are released when sessions end");
    let metrics = get(bridge.addr(), "/metrics").await?.body;
    for reason in [
        "handshake_timeout",
        "origin",
        "subprotocol",
        "max_connections_per_ip",
    ] {
        let line = format!("sotto_bridge_connections_refused_total{{reason=\"{reason}\"}} ");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "{reason}: {metrics}"
        );
    }
    bridge.stop().await?;
    Ok(())
}

/// A WebSocket that vanishes without `<close/>` leaves the server session resumable
/// (the bridge must not send `</stream:stream>`), and a new bridge connection resumes it with
/// the message that arrived in between.
#[tokio::test(flavor = "multi_thread")]
async fn abrupt_drop_keeps_the_session_resumable() -> Result<()> {
    let prosody = prosody("bridge-resume")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    let jid = alice
        .login_plain("localhost", "alice", "alice-pass", "phone")
        .await?;
    alice
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    let enabled = alice.recv_until("enabled").await?;
    let id = enabled
        .split("id='")
        .nth(1)
        .or_else(|| enabled.split("id=\"").nth(1))
        .and_then(|rest| rest.split(['\'', '"']).next())
        .unwrap_or_default()
        .to_owned();
    assert!(!id.is_empty(), "{enabled}");
    alice.send("<presence xmlns='jabber:client'/>").await?;
    alice.recv_until("<presence").await?;
    alice.vanish();

    let mut bob = RawClient::connect(&bridge.ws_url(), None).await?;
    bob.login_plain("localhost", "bob", "bob-pass", "b").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{jid}' type='chat' id='while-away'><body>sent while you were away</body></message>"
    ))
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    let (_open, features) = alice.open("localhost").await?;
    assert!(features.contains("PLAIN"), "{features}");
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pass");
    alice
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
    assert!(alice.recv_text().await?.contains("<success"));
    let (_open, features) = alice.open("localhost").await?;
    assert!(features.contains("urn:xmpp:sm:3"), "{features}");
    alice
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' h='1' previd='{id}'/>"
        ))
        .await?;
    let resumed = alice.recv_text().await?;
    assert!(resumed.contains("<resumed"), "resumption failed: {resumed}");
    let message = alice.recv_until("while-away").await?;
    assert!(message.contains("sent while you were away"), "{message}");
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_health_and_shutdown() -> Result<()> {
    let prosody = prosody("bridge-discovery")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let xrd = get(bridge.addr(), "/.well-known/host-meta").await?;
    assert_eq!(xrd.status, 200);
    assert!(
        xrd.body.contains(&format!("href='{}'", bridge.ws_url())),
        "{}",
        xrd.body
    );
    assert!(xrd.body.contains("urn:xmpp:alt-connections:websocket"));
    assert_eq!(xrd.header("access-control-allow-origin"), Some("*"));
    let jrd = get(bridge.addr(), "/.well-known/host-meta.json").await?;
    assert!(
        jrd.body
            .contains(&format!("\"href\":\"{}\"", bridge.ws_url())),
        "{}",
        jrd.body
    );
    assert_eq!(jrd.header("access-control-allow-origin"), Some("*"));
    assert_eq!(get(bridge.addr(), "/healthz").await?.body, "ok\n");

    // Graceful shutdown closes open sessions with 1001.
    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    alice
        .login_plain("localhost", "alice", "alice-pass", "s")
        .await?;
    let stop = tokio::spawn(bridge.stop());
    let (_, code) = drain(&mut alice).await?;
    assert_eq!(code, Some(1001));
    tokio::time::timeout(Duration::from_secs(5), stop).await???;
    Ok(())
}
