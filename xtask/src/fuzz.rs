//! `cargo xtask fuzz [--seconds N]`: every cargo-fuzz target, N seconds each: those in `fuzz/`
//! (the bridge's parsers) and those of any crate with a `fuzz/` directory of its own
//! (`client/*/fuzz`).
//!
//! Needs the nightly toolchain (installed through rustup when missing) and cargo-fuzz (installed
//! from crates.io when missing). Each target starts from its committed seed corpus in
//! `<fuzz dir>/corpus/<target>/` if there is one; what the fuzzer finds goes to
//! `<fuzz dir>/target/corpus/<target>/` (not committed), crashes to
//! `<fuzz dir>/artifacts/<target>/`, the log to `<fuzz dir>/target/logs/<target>.log`.

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
    /// `fuzz dir:target`, e.g. `fuzz:bridge_splitter`.
    pub target: String,
    pub runs: Option<u64>,
    pub seconds: f64,
}

/// Every cargo-fuzz directory: `fuzz/` first, then `client/*/fuzz`, each a cargo workspace of its
/// own whose Cargo.toml says `cargo-fuzz = true`.
fn fuzz_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut dirs = vec![root.join("fuzz")];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("client"))
        .map(|entries| entries.flatten().map(|e| e.path().join("fuzz")).collect())
        .unwrap_or_default();
    crates.sort();
    dirs.extend(crates);
    dirs.retain(|dir| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|toml| toml.contains("cargo-fuzz = true"))
    });
    dirs
}

/// `cargo +nightly …` in `dir`, through the rustup proxy (not `$CARGO`, which is pinned to the
/// workspace toolchain) and with that fuzz workspace's own target directory.
fn nightly_cargo(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .current_dir(dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env("CARGO_TARGET_DIR", dir.join("target"));
    cmd
}

/// `--fuzz-dir DIR`: cargo-fuzz would otherwise look for `fuzz/` under the current directory.
fn fuzz_command(dir: &Path, subcommand: &str) -> Command {
    let mut cmd = nightly_cargo(dir);
    cmd.args(["fuzz", subcommand, "--fuzz-dir"]).arg(dir);
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

/// The targets `cargo fuzz list` reports for `dir`.
fn targets(dir: &Path) -> Result<Vec<String>> {
    let output = fuzz_command(dir, "list")
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
    let mut results = Vec::new();
    for dir in fuzz_dirs() {
        let started = Instant::now();
        run_command(&mut fuzz_command(&dir, "build"))?;
        eprintln!(
            "fuzz targets in {} built in {:.0} s",
            rel(&dir),
            started.elapsed().as_secs_f64()
        );
        for target in targets(&dir)? {
            results.push(run_target(&dir, &target, seconds)?);
        }
    }
    eprintln!("\nfuzzing summary ({seconds} s per target):");
    for r in &results {
        let runs = r.runs.map_or("?".to_owned(), |n| n.to_string());
        eprintln!(
            "  {:<40} {runs:>12} executions in {:.0} s, no crash",
            r.target, r.seconds
        );
    }
    Ok(results)
}

fn run_target(dir: &Path, target: &str, seconds: u64) -> Result<FuzzResult> {
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
    let mut cmd = fuzz_command(dir, "run");
    if seconds <= TEST_SECONDS {
        // The brief runs inside `cargo xtask test` only keep the targets from rotting; skipping
        // AddressSanitizer there saves minutes of instrumented builds (the crates forbid
        // `unsafe`, so ASan mostly watches dependencies). Longer runs keep it.
        cmd.args(["--sanitizer", "none"]);
    }
    cmd.arg(target).arg(&work_corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let status = cmd
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
            "fuzz target {target} failed ({status}); the crashing input is in {}/artifacts/{target}/, \
             reproduce with `cargo +nightly fuzz run --fuzz-dir {} {target} <file>`",
            rel(dir),
            rel(dir)
        );
    }
    let runs = text
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .filter_map(|n| n.trim().parse().ok())
        .next_back();
    Ok(FuzzResult {
        target: format!("{}:{target}", rel(dir)),
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
