//! WebSocket keepalive (RFC 7395 §3.8: pings, never whitespace): the bridge pings every
//! `limits.ping_interval_secs`; a client that answers keeps its session, a client that answers
//! nothing for two intervals is dropped, and its upstream connection goes without
//! `</stream:stream>` so the XEP-0198 session can be resumed (here through the same bridge).

use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::http::get;
use sotto_tests::prosody::Prosody;
use sotto_tests::wsclient::{Frame, RawClient};

const ONE_SECOND_PINGS: &str = "[limits]\nping_interval_secs = 1\n";

fn prosody(name: &str) -> Result<Prosody> {
    Prosody::for_test(name, &["alice"])
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("sotto_bridge_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_answers_pings_keeps_its_quiet_session() -> Result<()> {
    let prosody = prosody("keepalive-alive")?;
    let bridge = BridgeFixture::start(&prosody, None, ONE_SECOND_PINGS).await?;
    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    alice
        .login_plain("localhost", "alice", "alice-pass", "quiet")
        .await?;
    // Four seconds without a stanza, reading (and so answering pings) all along.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < quiet_until {
        if let Ok(frame) = alice.recv_within(Duration::from_millis(200)).await {
            panic!("unexpected frame while quiet: {frame:?}");
        }
    }
    assert!(
        alice.pings_seen() >= 3,
        "pings seen: {}",
        alice.pings_seen()
    );
    alice
        .send("<iq xmlns='jabber:client' type='get' id='after-quiet'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let result = alice.recv_until("after-quiet").await?;
    assert!(result.contains("result"), "{result}");
    let metrics = get(bridge.addr(), "/metrics").await?;
    assert_eq!(
        refused(&metrics.body, "ping_timeout"),
        0,
        "{}",
        metrics.body
    );
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_answers_no_ping_is_dropped_and_can_resume() -> Result<()> {
    let prosody = prosody("keepalive-dead")?;
    let bridge = BridgeFixture::start(&prosody, None, ONE_SECOND_PINGS).await?;
    let mut alice = RawClient::connect(&bridge.ws_url(), None).await?;
    alice
        .login_plain("localhost", "alice", "alice-pass", "sleepy")
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

    // Not reading the socket: tungstenite sends no pongs, as with a frozen tab or a dead NAT
    // mapping. First ping after 1 s, declared dead 2 intervals later.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let metrics = get(bridge.addr(), "/metrics").await?;
    assert_eq!(
        refused(&metrics.body, "ping_timeout"),
        1,
        "{}",
        metrics.body
    );
    // The bridge dropped the WebSocket (no close handshake for a client that is not there).
    match alice.recv_within(Duration::from_secs(5)).await? {
        Frame::Closed(_) => {}
        Frame::Text(t) => panic!("unexpected frame after the ping timeout: {t}"),
    }

    // No </stream:stream> went upstream, so the server kept the session: resume it.
    let mut again = RawClient::connect(&bridge.ws_url(), None).await?;
    again.open("localhost").await?;
    let token = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pass");
    again
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
    assert!(again.recv_text().await?.contains("<success"));
    let (_open, features) = again.open("localhost").await?;
    assert!(features.contains("urn:xmpp:sm:3"), "{features}");
    again
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' h='0' previd='{id}'/>"
        ))
        .await?;
    let resumed = again.recv_text().await?;
    assert!(resumed.contains("<resumed"), "resumption failed: {resumed}");
    bridge.stop().await?;
    Ok(())
}
