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
            "send",
            "b@c",
            "hi",
        ],
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
    // Without --plaintext, sending is refused with the reason (no OMEMO in this build yet).
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
    assert!(
        text(&out.stderr).contains("--plaintext"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_listen_roster_and_clear_failures() -> Result<()> {
    let prosody = Prosody::start(ProsodyOptions {
        dir: sotto_tests::test_dir("cli")?,
        domain: "localhost".into(),
        websocket: false,
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
