//! Interop with a client nobody on the team wrote: `@xmpp/client` (xmpp.js, pinned in the root
//! package.json) signs in through the bridge and chats both ways with an account that the raw
//! RFC 7395 test client holds, everything relayed to a real Prosody.
//!
//! Needs `node` (≥ 20.10) and the root `node_modules` (`npm ci` at the workspace root).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::{Prosody, ProsodyOptions};
use sotto_tests::wsclient::RawClient;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The interop script, after checking that node and the npm package are there.
fn script() -> Result<PathBuf> {
    let root = workspace_root();
    let package = root.join("node_modules/@xmpp/client/package.json");
    if !package.is_file() {
        bail!(
            "{} is missing: run `npm ci` in the workspace root (it installs the pinned @xmpp/client)",
            package.display()
        );
    }
    let script = root.join("tests/interop/xmpp_js_chat.mjs");
    if !script.is_file() {
        bail!("{} is missing", script.display());
    }
    Ok(script)
}

/// Node's major version; fails clearly when node is not installed.
async fn node_major() -> Result<u32> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .await
        .context("`node` not found: the interop test needs Node.js 20.10 or later")?;
    let version = String::from_utf8_lossy(&out.stdout);
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the node version from {version:?}"))
}

struct Node {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Node {
    /// The next JSON event line; fails on an `error` event, on exit, or after `timeout`.
    async fn event(&mut self, timeout: Duration) -> Result<Value> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("xmpp.js said nothing for {timeout:?}"))??
            .ok_or_else(|| anyhow!("xmpp.js exited early"))?;
        let value: Value = serde_json::from_str(&line)
            .with_context(|| format!("not JSON from xmpp.js: {line}"))?;
        if value["event"] == "error" {
            bail!("xmpp.js failed: {}", value["message"]);
        }
        Ok(value)
    }

    async fn expect(&mut self, event: &str) -> Result<Value> {
        let value = self.event(Duration::from_secs(20)).await?;
        if value["event"] != event {
            bail!("expected {event} from xmpp.js, got {value}");
        }
        Ok(value)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn xmpp_js_logs_in_through_the_bridge_and_chats_both_ways() -> Result<()> {
    let script = script()?;
    let major = node_major().await?;

    let prosody = Prosody::start(ProsodyOptions {
        dir: sotto_tests::test_dir("interop-xmpp-js")?,
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;

    // Bob uses the raw RFC 7395 client, also through the bridge.
    let mut bob = RawClient::connect(&bridge.ws_url(), None).await?;
    let bob_jid = bob
        .login_plain("localhost", "bob", "bob-pass", "raw")
        .await?;
    bob.send("<presence xmlns='jabber:client'/>").await?;

    // Alice uses xmpp.js.
    let mut command = Command::new("node");
    if major < 22 {
        // Node 20 has the WHATWG WebSocket that xmpp.js uses only behind this flag.
        command.arg("--experimental-websocket");
    }
    let mut child = command
        .arg(&script)
        .current_dir(workspace_root())
        .env("XMPP_SERVICE", bridge.ws_url())
        .env("XMPP_DOMAIN", "localhost")
        .env("XMPP_USERNAME", "alice")
        .env("XMPP_PASSWORD", "alice-pass")
        .env("XMPP_PEER", &bob_jid)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from node"))?;
    let mut node = Node {
        child,
        lines: BufReader::new(stdout).lines(),
    };

    let online = node.expect("online").await?;
    let alice_jid = online["jid"].as_str().unwrap_or_default().to_owned();
    assert!(alice_jid.starts_with("alice@localhost/"), "{online}");
    let mechanism = online["mechanism"].as_str().unwrap_or_default();
    assert!(
        ["SCRAM-SHA-1", "PLAIN"].contains(&mechanism),
        "xmpp.js authenticated with {mechanism:?}"
    );
    assert_eq!(
        online["streamManagement"], true,
        "XEP-0198 through the bridge: {online}"
    );
    eprintln!("xmpp.js is online as {alice_jid} (SASL {mechanism})");
    node.expect("sent").await?;

    // xmpp.js → raw client.
    let message = bob.recv_until("<body>").await?;
    assert!(
        message.contains("hello from xmpp.js &amp; &lt;friends"),
        "{message}"
    );
    assert!(message.contains(&alice_jid), "{message}");

    // Raw client → xmpp.js.
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{alice_jid}' type='chat' id='b1'><body>hi xmpp.js, from the raw client &amp; bob</body></message>"
    ))
    .await?;
    let received = node.expect("received").await?;
    assert_eq!(
        received["body"], "hi xmpp.js, from the raw client & bob",
        "{received}"
    );
    assert!(
        received["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("bob@localhost/")),
        "{received}"
    );

    // xmpp.js closes its stream cleanly and exits 0.
    node.expect("offline").await?;
    let status = tokio::time::timeout(Duration::from_secs(10), node.child.wait())
        .await
        .context("node did not exit")??;
    assert!(status.success(), "node exited with {status}");

    bridge.stop().await?;
    Ok(())
}
