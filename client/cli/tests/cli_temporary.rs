//! `sotto --temporary`: an OMEMO device that lives for one command, against the real bridge and
//! a real Prosody.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::Result;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::Prosody;
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
    Ok(tokio::time::timeout(Duration::from_secs(60), cmd.output()).await??)
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_temporary_device_lives_for_one_command_and_leaves_the_device_list() -> Result<()> {
    let prosody = Prosody::for_test("cli-temporary", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;
    let ws = bridge.ws_url();

    // While it runs, the temporary device is in alice's list (the command prints it).
    let mut cmd = sotto(&ws, "alice@localhost", "alice-pass");
    cmd.args(["--temporary", "devices"]);
    let out = run(cmd).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let seen = lines(&out);
    let this = seen
        .iter()
        .find(|l| l["this"] == serde_json::Value::Bool(true))
        .unwrap_or_else(|| panic!("the temporary device is not in the list: {seen:?}"))["device"]
        .as_u64()
        .unwrap();

    // Afterwards bob does not see it any more.
    let mut cmd = sotto(&ws, "bob@localhost", "bob-pass");
    cmd.args(["devices", "alice@localhost"]);
    let out = run(cmd).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devices: Vec<u64> = lines(&out)
        .iter()
        .map(|l| l["device"].as_u64().unwrap())
        .collect();
    assert!(!devices.contains(&this), "{devices:?} still has {this}");

    // A temporary device is not stored.
    let mut cmd = sotto(&ws, "alice@localhost", "alice-pass");
    cmd.args(["--temporary", "--store", "somewhere", "fingerprints"]);
    let out = run(cmd).await?;
    assert_eq!(out.status.code(), Some(2));

    bridge.stop().await?;
    Ok(())
}
