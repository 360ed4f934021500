//! The `sotto` binary with clients nobody on the team wrote, through the real bridge to a real
//! Prosody:
//!
//! - slixmpp-omemo (python-omemo/python-oldmemo, `tests/interop/omemo_peer.py`): encrypted both
//!   ways, a message that waited in Prosody's offline storage, `--echo`, and a leak check of
//!   Prosody's data directory with a positive control;
//! - plain slixmpp: `--plaintext` both ways;
//! - `@xmpp/client` (xmpp.js, the root package.json): `--plaintext` both ways.
//!
//! The Python peers need `python3` with venv and PyPI on first run; xmpp.js needs `node` and
//! `npm ci` at the workspace root. Missing tools fail the tests with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::Prosody;
use sotto_tests::pypeer::{PeerOptions, PyPeer};
use sotto_tests::scan::{all_bytes, contains};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SOTTO: &str = env!("CARGO_BIN_EXE_sotto");

struct Cli {
    ws: String,
    jid: String,
    password: String,
    store: Option<PathBuf>,
    resource: String,
}

impl Cli {
    fn new(bridge: &BridgeFixture, user: &str) -> Self {
        Self {
            ws: bridge.ws_url(),
            jid: format!("{user}@localhost"),
            password: format!("{user}-pass"),
            store: None,
            resource: "cli".into(),
        }
    }

    fn with_resource(mut self, resource: &str) -> Self {
        self.resource = resource.into();
        self
    }

    fn with_store(mut self, dir: &Path) -> Self {
        self.store = Some(dir.to_path_buf());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SOTTO);
        cmd.args([
            "--service",
            &self.ws,
            "--jid",
            &self.jid,
            "--resource",
            &self.resource,
        ]);
        if let Some(store) = &self.store {
            cmd.arg("--store").arg(store);
        }
        cmd.args(args)
            .env("SOTTO_PASSWORD", &self.password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Result<Output> {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .with_context(|| format!("sotto {args:?} did not finish"))??;
        if !out.status.success() {
            bail!(
                "sotto {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    fn spawn(&self, args: &[&str]) -> Result<Child> {
        Ok(self.command(args).spawn()?)
    }
}

/// The JSON lines a finished `sotto listen` printed.
async fn listened(child: Child) -> Result<Vec<Value>> {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("sotto listen did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "sotto listen failed ({}): {}\nstdout: {stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

/// Waits until a spawned `sotto listen` is online and ready (its OMEMO device published).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sotto_and_slixmpp_omemo_exchange_encrypted_messages_also_offline() -> Result<()> {
    let prosody = Prosody::for_test("cli-interop-omemo", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let peers = prosody.dir().join("peers");
    let store = prosody.dir().join("alice-store");
    let alice = Cli::new(&bridge, "alice").with_store(&store);
    let secrets = [
        "cli interop secret 1: slixmpp writes while sotto is offline",
        "cli interop secret 2: sotto answers",
        "cli interop secret 3: echo me",
        "cli interop secret 1b: and again, still unanswered",
    ];

    // Publish alice's CLI device, then go offline.
    let out = alice.run(&["fingerprints"]).await?;
    let ours: Value = serde_json::from_slice(&out.stdout)?;
    let alice_device = ours["device"].as_u64().unwrap();

    let mut bob = PyPeer::start(&prosody, PeerOptions::fixture(&peers, "bob", "py")).await?;
    assert!(
        bob.devices("alice@localhost")
            .await?
            .contains(&u32::try_from(alice_device)?),
        "slixmpp-omemo sees the CLI's device"
    );

    // slixmpp-omemo starts the session while the CLI is offline: Prosody stores the messages
    // (both prekey messages with the same base key, since nobody answered the first).
    bob.send("alice@localhost", secrets[0]).await?;
    bob.send("alice@localhost", secrets[3]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = listened(alice.spawn(&["listen", "--count", "2", "--timeout", "30"])?).await?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["body"], secrets[0], "{lines:?}");
    assert_eq!(lines[1]["body"], secrets[3], "{lines:?}");
    for line in &lines {
        assert_eq!(line["encrypted"], true);
        assert!(line.get("error").is_none(), "{lines:?}");
    }
    // The CLI completed the session with an empty message.
    let kt = bob.expect("key_transport", |_| true).await?;
    assert_eq!(kt["device"], alice_device, "{kt}");

    // sotto send (the session from the store) → slixmpp-omemo.
    alice.run(&["send", "bob@localhost", secrets[1]]).await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(got["body"], secrets[1], "{got}");
    assert_eq!(got["encrypted"], true);
    assert_eq!(got["device"], alice_device);

    // sotto listen --echo answers encrypted.
    let listener = alice.spawn(&["listen", "--count", "1", "--timeout", "30", "--echo"])?;
    settle().await;
    bob.send("alice@localhost", secrets[2]).await?;
    let lines = listened(listener).await?;
    assert_eq!(lines[0]["body"], secrets[2], "{lines:?}");
    let echo = bob.expect("message", |_| true).await?;
    assert_eq!(echo["body"], secrets[2], "{echo}");
    assert_eq!(echo["encrypted"], true);

    // Positive control for the leak check: a plaintext message is found in Prosody's storage
    // (its archive), so the scan below can see bodies.
    let control = "cli interop plaintext control marker";
    alice
        .run(&["send", "bob@localhost", control, "--plaintext"])
        .await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(got["encrypted"], false);
    bob.quit().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = all_bytes(prosody.data_dir())?;
    assert!(
        contains(&stored, control),
        "positive control: the plaintext message should be in Prosody's data dir"
    );
    for secret in secrets {
        assert!(
            !contains(&stored, secret),
            "{secret:?} is stored in plaintext"
        );
    }
    // …and the CLI's store keeps no message text either.
    let kept = all_bytes(&store)?;
    for secret in secrets {
        assert!(!contains(&kept, secret), "{secret:?} is in the CLI's store");
    }
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sotto_plaintext_with_plain_slixmpp_both_ways() -> Result<()> {
    let prosody = Prosody::for_test("cli-interop-slixmpp", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let peers = prosody.dir().join("peers");
    let alice = Cli::new(&bridge, "alice");
    let mut bob = PyPeer::start(
        &prosody,
        PeerOptions::fixture(&peers, "bob", "plain").plain(),
    )
    .await?;

    alice
        .run(&[
            "send",
            "bob@localhost",
            "plain <hello> & welcome, slixmpp",
            "--plaintext",
        ])
        .await?;
    let got = bob.expect("message", |_| true).await?;
    assert_eq!(got["body"], "plain <hello> & welcome, slixmpp", "{got}");
    assert_eq!(got["encrypted"], false);
    assert!(
        got["from"]
            .as_str()
            .is_some_and(|f| f == "alice@localhost/cli"),
        "{got}"
    );

    // Without --plaintext the CLI refuses: a plain client publishes no OMEMO device.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        alice
            .command(&["send", "bob@localhost", "not without encryption"])
            .output(),
    )
    .await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no OMEMO device") && stderr.contains("--plaintext"),
        "{stderr}"
    );

    let listener = alice.spawn(&["listen", "--count", "1", "--timeout", "30"])?;
    settle().await;
    bob.send_plain("alice@localhost/cli", "slixmpp says \"hi\" & <bye>")
        .await?;
    let lines = listened(listener).await?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["body"], "slixmpp says \"hi\" & <bye>");
    assert_eq!(lines[0]["encrypted"], false);
    assert!(
        lines[0]["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("bob@localhost/plain")),
        "{lines:?}"
    );
    let rest = bob.drain(Duration::from_millis(500)).await?;
    assert!(
        !rest.iter().any(|e| e["body"] == "not without encryption"),
        "the refused message went out: {rest:?}"
    );
    bob.quit().await?;
    bridge.stop().await?;
    Ok(())
}

/// `node` and the pinned `@xmpp/client` (root `npm ci`), or a clear error.
async fn xmpp_js() -> Result<(PathBuf, u32)> {
    let root = sotto_tests::ports::workspace_root();
    let package = root.join("node_modules/@xmpp/client/package.json");
    if !package.is_file() {
        bail!(
            "{} is missing: run `npm ci` in the workspace root",
            package.display()
        );
    }
    let out = Command::new("node")
        .arg("--version")
        .output()
        .await
        .context("`node` not found: the xmpp.js interop test needs Node.js 20.10 or later")?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the node version from {version:?}"))?;
    Ok((root.join("tests/interop/xmpp_js_chat.mjs"), major))
}

#[tokio::test(flavor = "multi_thread")]
async fn sotto_plaintext_with_xmpp_js_both_ways() -> Result<()> {
    let (script, major) = xmpp_js().await?;
    let prosody = Prosody::for_test("cli-interop-xmpp-js", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let bob = Cli::new(&bridge, "bob");

    // bob's CLI listens; xmpp.js (alice) writes to it first, then waits for bob's answer.
    let listener = bob.spawn(&["listen", "--count", "1", "--timeout", "40"])?;
    settle().await;
    let mut node = Command::new("node");
    if major < 22 {
        node.arg("--experimental-websocket");
    }
    let mut node = node
        .arg(&script)
        .current_dir(sotto_tests::ports::workspace_root())
        .env("XMPP_SERVICE", bridge.ws_url())
        .env("XMPP_DOMAIN", "localhost")
        .env("XMPP_USERNAME", "alice")
        .env("XMPP_PASSWORD", "alice-pass")
        .env("XMPP_PEER", "bob@localhost/cli")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node")?;
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut next = async || -> Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("xmpp.js said nothing")??
            .ok_or_else(|| anyhow!("xmpp.js exited early"))?;
        let value: Value = serde_json::from_str(&line)?;
        if value["event"] == "error" {
            bail!("xmpp.js failed: {value}");
        }
        Ok(value)
    };
    let online = next().await?;
    assert_eq!(online["event"], "online", "{online}");
    assert_eq!(next().await?["event"], "sent");

    let heard = listened(listener).await?;
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0]["body"], "hello from xmpp.js & <friends>");
    assert_eq!(heard[0]["encrypted"], false);
    assert_eq!(heard[0]["from"], "alice@localhost/xmppjs");

    bob.run(&[
        "send",
        "alice@localhost",
        "sotto answers xmpp.js & <co>",
        "--plaintext",
    ])
    .await?;
    let received = next().await?;
    assert_eq!(received["event"], "received", "{received}");
    assert_eq!(received["body"], "sotto answers xmpp.js & <co>");
    assert_eq!(received["from"], "bob@localhost/cli");
    assert_eq!(next().await?["event"], "offline");
    let status = tokio::time::timeout(Duration::from_secs(10), node.wait()).await??;
    assert!(status.success(), "node exited with {status}");
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sotto_history_decrypts_what_this_device_missed_from_the_archive() -> Result<()> {
    let prosody = Prosody::for_test("cli-interop-history", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let dir = prosody.dir().to_path_buf();
    let phone = Cli::new(&bridge, "alice")
        .with_store(&dir.join("phone"))
        .with_resource("phone");
    let laptop = Cli::new(&bridge, "alice")
        .with_store(&dir.join("laptop"))
        .with_resource("laptop");
    let mut ids = Vec::new();
    for device in [&phone, &laptop] {
        let out = device.run(&["fingerprints"]).await?;
        let line: Value = serde_json::from_slice(&out.stdout)?;
        ids.push(u32::try_from(line["device"].as_u64().unwrap())?);
    }
    let mut bob = PyPeer::start(
        &prosody,
        PeerOptions::fixture(&dir.join("peers"), "bob", "py"),
    )
    .await?;
    let seen = bob.devices("alice@localhost").await?;
    assert!(ids.iter().all(|id| seen.contains(id)), "{seen:?} {ids:?}");

    // The phone reads it live; the laptop is off, so only the archive keeps it for the laptop.
    let text = "cli interop secret: for the archive";
    let listener = phone.spawn(&["listen", "--count", "1", "--timeout", "30"])?;
    settle().await;
    bob.send("alice@localhost", text).await?;
    let lines = listened(listener).await?;
    assert_eq!(lines[0]["body"], text, "{lines:?}");

    let out = laptop.run(&["history", "bob@localhost"]).await?;
    let history: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let found = history
        .iter()
        .find(|l| l["body"] == text)
        .unwrap_or_else(|| panic!("{history:?}"));
    assert_eq!(found["encrypted"], true);
    assert_eq!(found["direction"], "in");
    assert!(found.get("error").is_none(), "{found}");
    assert!(found["stamp"].is_string(), "{found}");

    // The phone already used the message's keys: its history says so instead of hiding it.
    let out = phone.run(&["history", "bob@localhost"]).await?;
    let history: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        history.iter().any(|l| l["encrypted"] == true
            && l["error"].as_str().is_some_and(|e| e.contains("already"))),
        "{history:?}"
    );
    assert!(!history.iter().any(|l| l["body"] == text), "{history:?}");
    bob.quit().await?;
    bridge.stop().await?;
    Ok(())
}
