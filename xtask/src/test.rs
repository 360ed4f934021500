//! `cargo xtask test`: every check the project has, in one command (the README's second one).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::deny;
use crate::dist;
use crate::fuzz;
use crate::repro;
use crate::util::{cargo, ensure_wasm_target, run_command, target_dir};

/// Crates that must stay sans-IO: they may not depend on these (checked with `cargo tree`).
const SANS_IO_CRATES: [&str; 3] = ["sotto-session", "sotto-omemo", "sotto-vault"];
const FORBIDDEN_IN_SANS_IO: [&str; 5] = ["tokio", "web-sys", "yew", "mio", "wasm-bindgen-futures"];

struct Steps {
    done: Vec<(String, f64)>,
}

impl Steps {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("\n==> {name}");
        let started = Instant::now();
        let result = f();
        let secs = started.elapsed().as_secs_f64();
        match &result {
            Ok(()) => self.done.push((name.to_owned(), secs)),
            Err(e) => eprintln!("==> FAILED: {name} ({secs:.1} s): {e:#}"),
        }
        result
    }
}

/// Runs the suite; `quick` skips clippy, the wasm build and the browser tests.
pub fn run(quick: bool) -> Result<()> {
    let mut steps = Steps { done: Vec::new() };
    steps.step("cargo fmt --check", || {
        run_command(cargo().args(["fmt", "--all", "--check"]))
    })?;
    if !quick {
        steps.step("cargo clippy (native)", || {
            run_command(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
        steps.step("cargo clippy (wasm32: app and core crates)", || {
            ensure_wasm_target()?;
            run_command(cargo().args([
                "clippy",
                "--target",
                "wasm32-unknown-unknown",
                "-p",
                "sotto-app",
                "-p",
                "sotto-session",
                "-p",
                "sotto-omemo",
                "-p",
                "sotto-vault",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
    }
    steps.step("core crates stay sans-IO", check_sans_io)?;
    let dist_dir = target_dir().join("dist");
    if !quick {
        let mut report = None;
        steps.step("cargo xtask dist (wasm build)", || {
            report = Some(dist::run(&dist::DistOptions::default())?);
            Ok(())
        })?;
        if let Some(report) = &report {
            steps.step(
                "reproducible client: a clean build elsewhere is byte-identical",
                || repro::check_against(report),
            )?;
        }
        steps.step("cargo deny check licenses bans sources", deny::check)?;
    }
    steps.step("cargo test (unit, integration, browser)", || {
        let mut cmd = cargo();
        cmd.args(["test", "--workspace"])
            .env("SOTTO_DIST_DIR", &dist_dir);
        if quick {
            cmd.args(["--", "--skip", "browser_"]);
        }
        run_command(&mut cmd)
    })?;
    if !quick {
        steps.step(
            &format!("fuzz targets ({} s each)", fuzz::TEST_SECONDS),
            || fuzz::run(fuzz::TEST_SECONDS).map(|_| ()),
        )?;
    }
    steps.step("no test process left behind", check_no_leftovers)?;
    eprintln!(
        "\nAll checks passed{}:",
        if quick { " (quick mode)" } else { "" }
    );
    for (name, secs) in &steps.done {
        eprintln!("  {secs:>7.1} s  {name}");
    }
    Ok(())
}

fn check_sans_io() -> Result<()> {
    for krate in SANS_IO_CRATES {
        let output = cargo()
            .args([
                "tree", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}",
            ])
            .output()?;
        if !output.status.success() {
            bail!("cargo tree -p {krate} failed");
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if FORBIDDEN_IN_SANS_IO.contains(&name) {
                bail!("{krate} depends on {name}: the protocol core must stay free of I/O runtimes and browser APIs");
            }
        }
    }
    Ok(())
}

/// Fails if a Prosody, chromedriver or Chromium started from this target dir is still running.
fn check_no_leftovers() -> Result<()> {
    let marker = target_dir().to_string_lossy().into_owned();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = cmdline.contains(&marker)
            && ["prosody", "chromedriver", "chromium", "sotto-bridge"]
                .iter()
                .any(|p| cmdline.contains(p));
        if ours && !cmdline.contains("/demo/") {
            leftovers.push(format!("{pid}: {}", cmdline.trim()));
        }
    }
    if !leftovers.is_empty() {
        for l in &leftovers {
            eprintln!("left behind: {l}");
        }
        // Clean up so the next run starts fresh, but still fail: a fixture leaks processes.
        for l in &leftovers {
            if let Some(pid) = l.split(':').next() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        bail!("{} test processes were left running", leftovers.len());
    }
    Ok(())
}
