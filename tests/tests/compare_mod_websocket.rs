//! The same scripted session through sotto-bridge (RFC 7395 → Prosody c2s over STARTTLS) and
//! through Prosody's own mod_websocket must look the same to a client: the same sequence of
//! top-level elements (name, namespace, attributes other than ids, child elements), the same
//! results, the same clean close.
//!
//! Script: alice and bob each open, authenticate with PLAIN, restart and bind; alice gets her
//! roster, sends initial presence, sends bob a message; bob receives it; alice closes cleanly.

use std::time::Duration;

use anyhow::{bail, Result};
use base64::Engine as _;
use sotto_bridge::xml::{parse_client_frame, ClientFrame, XmlLimits};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::{Prosody, ProsodyOptions};
use sotto_tests::wsclient::{Frame, RawClient};

/// One received frame, reduced to what must not differ between the two transports.
fn summary(frame: &str) -> Result<String> {
    match parse_client_frame(frame, &XmlLimits::default()) {
        Ok(ClientFrame::Open { version, lang, .. }) => {
            Ok(format!("open version={version:?} lang={lang:?}"))
        }
        Ok(ClientFrame::Close { see_other_uri }) => Ok(format!("close {see_other_uri:?}")),
        Ok(ClientFrame::Element(info)) => {
            // Ids are random per session; children are sorted because Prosody lists stream
            // features in hash-table order, which differs from one run to the next.
            let mut attrs: Vec<String> = info
                .attributes
                .iter()
                .filter(|(name, _)| name != "id")
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            attrs.sort();
            let mut children: Vec<String> = info
                .children
                .iter()
                .map(|(ns, name)| format!("{{{ns}}}{name}"))
                .collect();
            children.sort();
            Ok(format!(
                "{{{}}}{} [{}] ({})",
                info.namespace,
                info.local_name,
                attrs.join(" "),
                children.join(" ")
            ))
        }
        Err(e) => bail!("not a valid RFC 7395 frame ({e}): {frame}"),
    }
}

/// What one client saw.
#[derive(Default, Debug)]
struct Transcript {
    summaries: Vec<String>,
    /// Text results that must match: bound JID, message body.
    results: Vec<String>,
}

struct Scripted {
    client: RawClient,
    seen: Transcript,
}

fn text_of(frame: &str, element: &str) -> Option<String> {
    let start = frame.find(&format!("<{element}>"))? + element.len() + 2;
    let end = frame[start..].find(&format!("</{element}>"))? + start;
    Some(frame[start..end].to_owned())
}

impl Scripted {
    async fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            client: RawClient::connect(url, None).await?,
            seen: Transcript::default(),
        })
    }

    /// Sends `send` (if any), then records every frame until one contains `until`.
    async fn step(&mut self, send: Option<&str>, until: &str) -> Result<String> {
        if let Some(text) = send {
            self.client.send(text).await?;
        }
        loop {
            let frame = self.client.recv_text().await?;
            self.seen.summaries.push(summary(&frame)?);
            if frame.contains(until) {
                return Ok(frame);
            }
        }
    }

    async fn login(&mut self, user: &str, password: &str, resource: &str) -> Result<()> {
        let open =
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
        self.step(Some(open), "<open").await?;
        let features = self.step(None, "features").await?;
        let mut mechanisms: Vec<&str> = features
            .split("<mechanism>")
            .skip(1)
            .filter_map(|rest| rest.split("</mechanism>").next())
            .collect();
        mechanisms.sort_unstable();
        self.seen.results.push(format!("mechanisms {mechanisms:?}"));
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.step(
            Some(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
            )),
            "success",
        )
        .await?;
        self.step(Some(open), "<open").await?;
        self.step(None, "features").await?;
        let bound = self
            .step(
                Some(&format!(
                    "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
                )),
                "bind1",
            )
            .await?;
        self.seen
            .results
            .push(format!("bound {:?}", text_of(&bound, "jid")));
        Ok(())
    }
}

/// Runs the script against one WebSocket endpoint; returns (alice's, bob's) transcripts.
async fn session(url: &str) -> Result<(Transcript, Transcript)> {
    let mut alice = Scripted::connect(url).await?;
    alice.login("alice", "alice-pass", "cmp").await?;
    let mut bob = Scripted::connect(url).await?;
    bob.login("bob", "bob-pass", "cmp").await?;
    bob.step(Some("<presence xmlns='jabber:client'/>"), "<presence")
        .await?;

    let roster = alice
        .step(
            Some("<iq xmlns='jabber:client' type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>"),
            "roster1",
        )
        .await?;
    alice.seen.results.push(format!(
        "roster result: {}",
        roster.contains("type='result'") || roster.contains("type=\"result\"")
    ));
    alice
        .step(Some("<presence xmlns='jabber:client'/>"), "<presence")
        .await?;
    alice
        .client
        .send("<message xmlns='jabber:client' to='bob@localhost/cmp' type='chat' id='msg1'><body>same &amp; same</body></message>")
        .await?;
    let message = bob.step(None, "<body>").await?;
    bob.seen
        .results
        .push(format!("body {:?}", text_of(&message, "body")));

    alice
        .step(
            Some("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            "<close",
        )
        .await?;
    // Then the WebSocket closes normally, with nothing else before it.
    match alice.client.recv_within(Duration::from_secs(10)).await? {
        Frame::Closed(code) => alice.seen.results.push(format!("ws close {code:?}")),
        Frame::Text(t) => bail!("text after <close/>: {t}"),
    }
    Ok((alice.seen, bob.seen))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_through_the_bridge_looks_like_one_through_mod_websocket() -> Result<()> {
    let prosody = Prosody::start(ProsodyOptions {
        dir: sotto_tests::test_dir("compare-mod-websocket")?,
        domain: "localhost".into(),
        websocket: true,
        plaintext_c2s: false,
    })?;
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let Some(direct_url) = prosody.websocket_url() else {
        bail!("the Prosody fixture did not enable mod_websocket");
    };

    let (bridge_alice, bridge_bob) = session(&bridge.ws_url()).await?;
    let (direct_alice, direct_bob) = session(&direct_url).await?;

    eprintln!("alice saw: {bridge_alice:#?}\nbob saw: {bridge_bob:#?}");
    for (who, via_bridge, direct) in [
        ("alice", &bridge_alice, &direct_alice),
        ("bob", &bridge_bob, &direct_bob),
    ] {
        assert_eq!(
            via_bridge.summaries, direct.summaries,
            "{who}: elements differ\nbridge:        {:#?}\nmod_websocket: {:#?}",
            via_bridge.summaries, direct.summaries
        );
        assert_eq!(via_bridge.results, direct.results, "{who}: results differ");
    }
    assert!(
        bridge_alice
            .results
            .contains(&"bound Some(\"alice@localhost/cmp\")".to_owned()),
        "{:?}",
        bridge_alice.results
    );
    assert!(
        bridge_alice
            .results
            .contains(&"ws close Some(1000)".to_owned()),
        "{:?}",
        bridge_alice.results
    );
    assert_eq!(
        bridge_bob.results.last(),
        Some(&"body Some(\"same &amp; same\")".to_owned())
    );
    bridge.stop().await?;
    Ok(())
}
