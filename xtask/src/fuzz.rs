//! `cargo xtask fuzz [--seconds N]`: every cargo-fuzz target under `fuzz/`, N seconds each.
//!
//! Needs the nightly toolchain (installed through rustup when missing) and cargo-fuzz (installed
//! from crates.io when missing). Each target starts from its committed seed corpus in
//! `fuzz/corpus/<target>/`; what the fuzzer finds goes to `fuzz/target/corpus/<target>/` (not
//! committed), crashes to `fuzz/artifacts/<target>/`, the log to `fuzz/target/logs/<target>.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{apt_install, have, run_command, workspace_root};

/// Seconds per target for `cargo xtask fuzz` without `--seconds`.
pub const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target inside `cargo xtask test`: enough to build and shake each target once.
pub const TEST_SECONDS: u64 = 5;
/// The cargo-fuzz release installed when missing (pinned so CI is repeatable).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// What one target did.
pub struct FuzzResult {
    pub target: String,
    pub runs: Option<u64>,
    pub seconds: f64,
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// `cargo +nightly …` in `fuzz/`, through the rustup proxy (not `$CARGO`, which is pinned to the
/// workspace toolchain) and with the fuzz workspace's own target directory.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .current_dir(fuzz_dir())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env("CARGO_TARGET_DIR", fuzz_dir().join("target"));
    cmd
}

/// Installs the nightly toolchain, cargo-fuzz and a C++ compiler (libfuzzer-sys builds libFuzzer
/// from source) if they are missing.
pub fn ensure_tools() -> Result<()> {
    if !have("c++") {
        apt_install(&["g++"])?;
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        eprintln!("installing the nightly toolchain (cargo-fuzz needs it)");
        run_command(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !have("cargo-fuzz") {
        eprintln!("installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io");
        let started = Instant::now();
        run_command(Command::new("cargo").current_dir(workspace_root()).args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
        eprintln!(
            "cargo-fuzz installed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The targets `cargo fuzz list` reports.
fn targets() -> Result<Vec<String>> {
    let output = nightly_cargo()
        .args(["fuzz", "list"])
        .output()
        .context("cannot run cargo fuzz list")?;
    if !output.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Builds all targets, then runs each for `seconds`; fails on the first crash.
pub fn run(seconds: u64) -> Result<Vec<FuzzResult>> {
    ensure_tools()?;
    let started = Instant::now();
    run_command(nightly_cargo().args(["fuzz", "build"]))?;
    eprintln!(
        "fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for target in targets()? {
        results.push(run_target(&target, seconds)?);
    }
    eprintln!("\nfuzzing summary ({seconds} s per target):");
    for r in &results {
        let runs = r.runs.map_or("?".to_owned(), |n| n.to_string());
        eprintln!(
            "  {:<28} {runs:>12} executions in {:.0} s, no crash",
            r.target, r.seconds
        );
    }
    Ok(results)
}

fn run_target(target: &str, seconds: u64) -> Result<FuzzResult> {
    let dir = fuzz_dir();
    let work_corpus = dir.join("target").join("corpus").join(target);
    let seeds = dir.join("corpus").join(target);
    let logs = dir.join("target").join("logs");
    std::fs::create_dir_all(&work_corpus)?;
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    eprintln!("fuzzing {target} for {seconds} s (log: {})", rel(&log_path));
    let started = Instant::now();
    // New inputs go to the first corpus directory; the committed seeds are only read.
    let status = nightly_cargo()
        .args(["fuzz", "run", target])
        .arg(&work_corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run cargo fuzz run {target}"))?;
    let secs = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.into_iter().rev() {
            eprintln!("  | {line}");
        }
        bail!(
            "fuzz target {target} failed ({status}); the crashing input is in fuzz/artifacts/{target}/, \
             reproduce with `cd fuzz && cargo +nightly fuzz run {target} <file>`"
        );
    }
    let runs = text
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .filter_map(|n| n.trim().parse().ok())
        .next_back();
    Ok(FuzzResult {
        target: target.to_owned(),
        runs,
        seconds: secs,
    })
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
