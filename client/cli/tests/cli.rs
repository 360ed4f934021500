//! The `sotto` binary against the real bridge and a real Prosody: what scripts rely on.

use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::Result;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::{Prosody, ProsodyOptions};
use tokio::process::Command;

const SOTTO: &str = env!("CARGO_BIN_EXE_sotto");

fn sotto(service: &str, jid: &str, password: &str) -> Command {
    let mut cmd = Command::new(SOTTO);
    cmd.args(["--service", service, "--jid", jid])
        .env("SOTTO_PASSWORD", password)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command) -> Result<Output> {
    Ok(tokio::time::timeout(Duration::from_secs(30), cmd.output()).await??)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn usage_errors_exit_2_without_touching_the_network() {
    let out = std::process::Command::new(SOTTO)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("sotto "));
    for args in [
        vec!["--jid", "a@b", "roster"],
        vec!["--service", "ws://127.0.0.1:9/", "roster"],
        vec![
            "--service",
            "ws://127.0.0.1:9/",
            "--jid",
            "not a jid",
            "roster",
        ],
        vec![
            "--service",
            "ws://127.0.0.1:9/",
            "--jid",
            "a@b",
            "--password",
            "x",
            "roster",
        ],
        vec![
            "--service",
            "ws://127.0.0.1:9/",
            "--jid",
            "a@b",
            "frobnicate",
        ],
        vec![
            "--service",
            "ws://127.0.0.1:9/",
            "--jid",
            "a@b",
            "devices",
            "b@c",
            "extra",
        ],
        vec!["--service", "ws://127.0.0.1:9/", "--jid", "a@b", "history"],
    ] {
        let out = std::process::Command::new(SOTTO)
            .args(&args)
            .env("SOTTO_PASSWORD", "x")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Without --plaintext, sending is encrypted: it needs the server (exit 5 when unreachable).
    let out = std::process::Command::new(SOTTO)
        .args([
            "--service",
            "ws://127.0.0.1:9/",
            "--jid",
            "a@b",
            "send",
            "b@c",
            "hi",
        ])
        .env("SOTTO_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn send_listen_roster_and_clear_failures() -> Result<()> {
    let prosody = Prosody::start(ProsodyOptions {
        dir: sotto_tests::test_dir("cli")?,
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let ws = bridge.ws_url();

    // Wrong password: exit 4 with words a person understands.
    let out = run({
        let mut c = sotto(&ws, "alice@localhost", "wrong");
        c.arg("roster");
        c
    })
    .await?;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("wrong address or password"),
        "{}",
        text(&out.stderr)
    );

    // Unknown domain at the bridge, and nothing listening: exit 5.
    let out = run({
        let mut c = sotto(&ws, "alice@elsewhere.example", "x");
        c.arg("roster");
        c
    })
    .await?;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unknown domain"),
        "{}",
        text(&out.stderr)
    );
    let closed = format!(
        "ws://127.0.0.1:{}/xmpp-websocket",
        sotto_tests::free_loopback_port()?
    );
    let out = run({
        let mut c = sotto(&closed, "alice@localhost", "alice-pass");
        c.arg("roster");
        c
    })
    .await?;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));

    // A listener that gets nothing times out with exit 3.
    let out = run({
        let mut c = sotto(&ws, "bob@localhost", "bob-pass");
        c.args(["listen", "--timeout", "1"]);
        c
    })
    .await?;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // bob listens for two messages; alice sends them; bob prints one JSON line each.
    let mut listener = sotto(&ws, "bob@localhost", "bob-pass");
    listener
        .args(["listen", "--count", "2", "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let listener = listener.spawn()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for body in ["first \"quoted\" line", "second <b>&"] {
        let out = run({
            let mut c = sotto(&ws, "alice@localhost", "alice-pass");
            c.args(["send", "bob@localhost", body, "--plaintext"]);
            c
        })
        .await?;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = tokio::time::timeout(Duration::from_secs(25), listener.wait_with_output()).await??;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["body"], "first \"quoted\" line");
    assert_eq!(lines[1]["body"], "second <b>&");
    assert!(lines[0]["from"]
        .as_str()
        .is_some_and(|f| f.starts_with("alice@localhost/")));
    assert_eq!(lines[0]["encrypted"], false);

    // Roster management.
    let out = run({
        let mut c = sotto(&ws, "alice@localhost", "alice-pass");
        c.args(["add", "bob@localhost"]);
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run({
        let mut c = sotto(&ws, "alice@localhost", "alice-pass");
        c.arg("roster");
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let roster: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        roster
            .iter()
            .any(|r| r["jid"] == "bob@localhost" && r["pending"] == true),
        "{roster:?}"
    );
    let out = run({
        let mut c = sotto(&ws, "alice@localhost", "alice-pass");
        c.args(["remove", "bob@localhost"]);
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run({
        let mut c = sotto(&ws, "alice@localhost", "alice-pass");
        c.arg("roster");
        c
    })
    .await?;
    assert!(
        !text(&out.stdout).contains("bob@localhost"),
        "{}",
        text(&out.stdout)
    );
    bridge.stop().await?;
    Ok(())
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn omemo_send_listen_devices_fingerprints() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let prosody = Prosody::start(ProsodyOptions {
        dir: sotto_tests::test_dir("cli-omemo")?,
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let ws = bridge.ws_url();
    let stores = sotto_tests::test_dir("cli-omemo-stores")?;
    let alice_store = stores.join("alice");
    let bob_store = stores.join("bob");
    let with_store = |jid: &str, password: &str, store: &std::path::Path| {
        let mut c = sotto(&ws, jid, password);
        c.arg("--store").arg(store);
        c
    };

    // bob's device: a fingerprint, kept across runs in a 0600 file.
    let out = run({
        let mut c = with_store("bob@localhost", "bob-pass", &bob_store);
        c.arg("fingerprints");
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = lines(&out);
    assert_eq!(first.len(), 1, "{first:?}");
    let fingerprint = first[0]["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(fingerprint.split(' ').count(), 8, "{fingerprint}");
    let mode = std::fs::metadata(bob_store.join("omemo.device"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = run({
        let mut c = with_store("bob@localhost", "bob-pass", &bob_store);
        c.arg("devices");
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let devices = lines(&out);
    assert!(
        devices
            .iter()
            .any(|d| d["device"] == first[0]["device"] && d["this"] == true),
        "{devices:?}"
    );

    // A contact without OMEMO devices: a clear refusal that names --plaintext.
    let out = run({
        let mut c = with_store("alice@localhost", "alice-pass", &alice_store);
        c.args(["send", "nobody@localhost", "not sent"]);
        c
    })
    .await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no OMEMO device") && stderr.contains("--plaintext"),
        "{stderr}"
    );

    // Encrypted by default: bob's listener decrypts and says so.
    let secret = "cli omemo secret: the cake is in the oven";
    let mut listener = with_store("bob@localhost", "bob-pass", &bob_store);
    listener
        .args(["listen", "--count", "1", "--timeout", "20", "--echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let listener = listener.spawn()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = run({
        let mut c = with_store("alice@localhost", "alice-pass", &alice_store);
        c.args(["send", "bob@localhost", secret]);
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tokio::time::timeout(Duration::from_secs(25), listener.wait_with_output()).await??;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("cannot echo"),
        "{}",
        text(&out.stderr)
    );
    let received = lines(&out);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["body"], secret);
    assert_eq!(received[0]["encrypted"], true);
    assert!(received[0].get("error").is_none(), "{received:?}");

    // A second round, on the stored sessions: still read by bob, and bob's store now knows
    // alice's device with its trust.
    let mut listener = with_store("bob@localhost", "bob-pass", &bob_store);
    listener
        .args(["listen", "--count", "1", "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let listener = listener.spawn()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = run({
        let mut c = with_store("alice@localhost", "alice-pass", &alice_store);
        c.args(["send", "bob@localhost", "second secret round"]);
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tokio::time::timeout(Duration::from_secs(25), listener.wait_with_output()).await??;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let received = lines(&out);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["body"], "second secret round", "{received:?}");
    assert_eq!(received[0]["encrypted"], true);
    let stored = std::fs::read(bob_store.join("omemo.device"))?;
    assert!(
        stored.windows(15).any(|w| w == b"alice@localhost"),
        "bob's store keeps alice's device"
    );
    let out = run({
        let mut c = with_store("bob@localhost", "bob-pass", &bob_store);
        c.args(["devices", "alice@localhost"]);
        c
    })
    .await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alice_devices = lines(&out);
    assert!(
        alice_devices
            .iter()
            .any(|d| d["trust"] == "blind" && d["fingerprint"].as_str().is_some()),
        "{alice_devices:?}"
    );

    // The identity survived the runs.
    let out = run({
        let mut c = with_store("bob@localhost", "bob-pass", &bob_store);
        c.arg("fingerprints");
        c
    })
    .await?;
    assert_eq!(lines(&out)[0]["fingerprint"], fingerprint.as_str());

    let stored = sotto_tests::scan::all_bytes(prosody.data_dir())?;
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));
    bridge.stop().await?;
    Ok(())
}
