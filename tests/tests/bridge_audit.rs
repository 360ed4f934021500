//! The audit log of use (`[audit]`) and the page configuration (`/config.json`), with the real
//! bridge in front of a real Prosody: a scripted session produces exactly the expected lines,
//! and nothing said in it (bodies, subjects, OMEMO payloads and keys, the password) is in the
//! file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::http::get;
use sotto_tests::prosody::Prosody;
use sotto_tests::wsclient::{Frame, RawClient};

fn toml_path(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// Waits until the audit file holds `n` lines, then returns them parsed.
async fn audit_lines(path: &Path, n: usize) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
                .collect();
        }
        if Instant::now() > deadline {
            bail!("expected {n} audit lines, have:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn enabled_id(frame: &str) -> String {
    frame
        .split("id='")
        .nth(1)
        .or_else(|| frame.split("id=\"").nth(1))
        .and_then(|rest| rest.split(['\'', '"']).next())
        .unwrap_or_default()
        .to_owned()
}

/// Checks one line: its event and fields (`None` = JSON null), a well-formed time, no `ip`.
fn check(line: &Value, event: &str, fields: &[(&str, Option<&str>)]) {
    assert_eq!(line["event"], event, "{line}");
    for (key, value) in fields {
        match value {
            Some(v) => assert_eq!(line[*key], *v, "{key} in {line}"),
            None => assert!(line[*key].is_null(), "{key} in {line}"),
        }
    }
    let time = line["time"].as_str().unwrap_or_default();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{line}"
    );
    assert!(line.get("ip").is_none(), "ip without log_ip: {line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scripted_session_gives_exactly_the_expected_lines_and_no_content() -> Result<()> {
    let prosody = Prosody::for_test("audit-session", &["alice", "bob"])?;
    let audit_path = prosody.dir().join("audit.jsonl");
    let _ = std::fs::remove_file(&audit_path);
    let bridge = BridgeFixture::start(
        &prosody,
        None,
        &format!(
            "[policy]\nallowed_domains = [\"localhost\"]\n[audit]\nenabled = true\npath = {}\n",
            toml_path(&audit_path)
        ),
    )
    .await?;
    let kiosk_url = format!("{}?mode=kiosk", bridge.ws_url());

    // 1. bob logs in (no mode given); alice logs in from a kiosk.
    let mut bob = RawClient::connect(&bridge.ws_url(), None).await?;
    bob.login_plain("localhost", "bob", "bob-pass", "b1")
        .await?;
    bob.send("<presence xmlns='jabber:client'/>").await?;
    bob.recv_until("<presence").await?;
    let mut alice = RawClient::connect(&kiosk_url, None).await?;
    alice
        .login_plain("localhost", "alice", "alice-pass", "a1")
        .await?;
    alice
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    let previd = enabled_id(&alice.recv_until("<enabled").await?);
    alice.send("<presence xmlns='jabber:client'/>").await?;
    alice.recv_until("<presence").await?;

    // 2. Messages: plaintext with a subject, and OMEMO with key material and a payload.
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='m1'><subject>audit-secret-subject</subject><body>audit-secret-body</body></message>")
        .await?;
    bob.recv_until("audit-secret-body").await?;
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' type='chat' id='m2'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='4242'><key rid='77'>QVVESVRLRVlNQVRFUklBTA==</key><iv>QVVESVRJVklW</iv></header><payload>QVVESVRQQVlMT0FE</payload></encrypted><body>audit-omemo-fallback</body></message>")
        .await?;
    bob.recv_until("QVVESVRQQVlMT0FE").await?;

    // 3. A refusal.
    alice
        .send("<message xmlns='jabber:client' to='eve@elsewhere.example' type='chat' id='m3'><body>audit-secret-refused</body></message>")
        .await?;
    alice.recv_until("id='m3'").await?;

    // 4. The connection drops and the session is resumed (from a kiosk again).
    alice.vanish();
    let mut alice = RawClient::connect(&kiosk_url, None).await?;
    alice.open("localhost").await?;
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pass");
    alice
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
    assert!(alice.recv_text().await?.contains("<success"));
    alice.open("localhost").await?;
    // h=0 is always acceptable (the server re-sends what it has not seen acknowledged).
    alice
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' h='0' previd='{previd}'/>"
        ))
        .await?;
    let resumed = alice.recv_text().await?;
    assert!(resumed.contains("<resumed"), "{resumed}");

    // 5. alice logs out; bob's connection is lost.
    alice
        .send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await?;
    loop {
        if let Frame::Closed(_) = alice.recv().await? {
            break;
        }
    }
    let lines = audit_lines(&audit_path, 6).await?;
    bob.vanish();
    let lines_after = audit_lines(&audit_path, 7).await?;
    assert_eq!(lines_after.get(..6), Some(&lines[..]));
    let lines = lines_after;
    assert_eq!(lines.len(), 7, "{lines:#?}");

    check(
        &lines[0],
        "login",
        &[
            ("account", Some("bob@localhost")),
            ("resource", Some("b1")),
            ("mode", None),
        ],
    );
    check(
        &lines[1],
        "login",
        &[
            ("account", Some("alice@localhost")),
            ("resource", Some("a1")),
            ("mode", Some("kiosk")),
        ],
    );
    check(
        &lines[2],
        "refusal",
        &[
            ("account", Some("alice@localhost")),
            ("resource", Some("a1")),
            ("rule", Some("domain")),
            ("stanza", Some("message")),
            ("target_domain", Some("elsewhere.example")),
        ],
    );
    check(
        &lines[3],
        "logout",
        &[
            ("account", Some("alice@localhost")),
            ("resource", Some("a1")),
            ("how", Some("connection_lost")),
        ],
    );
    check(
        &lines[4],
        "resume",
        &[
            ("account", Some("alice@localhost")),
            ("resource", Some("a1")),
            ("mode", Some("kiosk")),
        ],
    );
    check(
        &lines[5],
        "logout",
        &[
            ("account", Some("alice@localhost")),
            ("resource", Some("a1")),
            ("how", Some("close")),
        ],
    );
    check(
        &lines[6],
        "logout",
        &[
            ("account", Some("bob@localhost")),
            ("resource", Some("b1")),
            ("how", Some("connection_lost")),
        ],
    );

    // Nothing that was said, and no credential, is in the file.
    let raw = std::fs::read_to_string(&audit_path)?;
    for secret in [
        "audit-secret",
        "audit-omemo-fallback",
        "QVVESVRLRVlNQVRFUklBTA",
        "QVVESVRJVklW",
        "QVVESVRQQVlMT0FE",
        "AUDIT",
        "4242",
        "alice-pass",
        "bob-pass",
        token.as_str(),
        previd.as_str(),
    ] {
        assert!(!raw.contains(secret), "{secret:?} in the audit log:\n{raw}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&audit_path)?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let metrics = get(bridge.addr(), "/metrics").await?.body;
    assert!(
        metrics.contains("sotto_bridge_audit_lines_total 7"),
        "{metrics}"
    );
    assert!(metrics.contains("sotto_bridge_audit_lines_dropped_total 0"));
    // The page configuration tells the app that audit is on.
    let config = get(bridge.addr(), "/config.json").await?;
    let json: Value = serde_json::from_str(&config.body)?;
    assert_eq!(json["audit"], true, "{}", config.body);
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn config_json_announces_audit_and_kiosk_settings() -> Result<()> {
    let prosody = Prosody::for_test("audit-config-json", &[])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let response = get(bridge.addr(), "/config.json").await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    let json: Value = serde_json::from_str(&response.body)?;
    assert_eq!(
        json,
        serde_json::json!({
            "audit": false,
            "domains": [prosody.domain()],
            "client": {"default_mode": "personal", "kiosk_idle_secs": 300, "force_kiosk": false,
                       "other_servers": false}
        })
    );
    // Connections to this origin only.
    let csp = response
        .header("content-security-policy")
        .unwrap_or_default();
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    bridge.stop().await?;

    let bridge = BridgeFixture::start(
        &prosody,
        None,
        "[client]\ndefault_mode = \"kiosk\"\nkiosk_idle_secs = 120\nforce_kiosk = true\n\
         other_servers = true\n",
    )
    .await?;
    let response = get(bridge.addr(), "/config.json").await?;
    let json: Value = serde_json::from_str(&response.body)?;
    assert_eq!(
        json,
        serde_json::json!({
            "audit": false,
            "domains": [prosody.domain()],
            "client": {"default_mode": "kiosk", "kiosk_idle_secs": 120, "force_kiosk": true,
                       "other_servers": true}
        })
    );
    // Other servers' WebSockets and host-meta are reachable (a loopback http bridge: ws too).
    let csp = response
        .header("content-security-policy")
        .unwrap_or_default();
    assert!(
        csp.contains("connect-src 'self' https: wss: http: ws:;"),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{csp}"
    );
    bridge.stop().await?;
    Ok(())
}
