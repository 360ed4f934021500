//! `cargo deny check licenses bans sources` against `deny.toml`: the supply-chain policy
//! (allowed licenses, banned crates, crates.io as the only source).
//!
//! cargo-deny is installed from crates.io (pinned) when missing. Advisories are not checked here:
//! they need a fetch of the RustSec database, which test machines cannot do.

use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{cargo, have, run_command, workspace_root};

/// The cargo-deny release installed when missing (pinned so CI is repeatable).
const CARGO_DENY_VERSION: &str = "0.20.2";

pub fn check() -> Result<()> {
    ensure_cargo_deny()?;
    // cargo-deny runs offline (no advisory database), so every crate of the lock file must be
    // in cargo's cache — including those of targets never built here (wasi, Apple, Windows),
    // which a fresh machine has not downloaded: fetch them from crates.io first.
    run_command(
        cargo()
            .current_dir(workspace_root())
            .args(["fetch", "--locked"]),
    )
    .context("cargo fetch (every crate of Cargo.lock, for cargo-deny)")?;
    run_command(
        cargo()
            .current_dir(workspace_root())
            .args([
                "deny",
                "--locked",
                "--offline",
                "--log-level",
                "error",
                "check",
            ])
            .args(["licenses", "bans", "sources"]),
    )
}

fn ensure_cargo_deny() -> Result<()> {
    let installed = Command::new("cargo-deny")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DENY_VERSION));
    if installed {
        return Ok(());
    }
    if have("cargo-deny") {
        eprintln!("cargo-deny is not version {CARGO_DENY_VERSION}; installing that version");
    }
    run_command(cargo().args([
        "install",
        "--locked",
        "cargo-deny",
        "--version",
        CARGO_DENY_VERSION,
    ]))
    .context("installing cargo-deny from crates.io")
}
