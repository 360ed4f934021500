//! `cargo xtask repro`: proves the browser client builds reproducibly.
//!
//! A user (or a browser extension) can only check that the bridge serves the published client if
//! anyone can rebuild it byte for byte. This builds the client twice — once in the workspace as
//! usual, once from a copy of the sources at another path into another, empty target directory —
//! and fails unless every file of the two sites (the hashed wasm, js, css, index.html, their
//! `.gz`/`.br` copies and SHA256SUMS) is byte-identical.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::dist::{self, DistOptions, DistReport};
use crate::util::{target_dir, workspace_root};

/// Builds both sites and compares them.
pub fn run() -> Result<()> {
    let first = dist::run(&DistOptions {
        quiet: true,
        ..DistOptions::default()
    })?;
    check_against(&first)
}

/// Builds the site again from a copy of the sources and compares it with `first`.
pub fn check_against(first: &DistReport) -> Result<()> {
    let work = target_dir().join("repro");
    let copy = work.join("elsewhere").join("sotto");
    let copy_target = work.join("target");
    for dir in [&copy, &copy_target] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    copy_sources(&workspace_root(), &copy)?;
    let second = dist::run(&DistOptions {
        out_dir: Some(work.join("dist")),
        quiet: true,
        source_root: Some(copy.clone()),
        target_dir: Some(copy_target.clone()),
    })?;
    let differences = compare_dirs(&first.out_dir, &second.out_dir)?;
    if !differences.is_empty() {
        bail!(
            "the two builds differ (kept for inspection: {} and {}):\n  {}",
            first.out_dir.display(),
            second.out_dir.display(),
            differences.join("\n  ")
        );
    }
    eprintln!(
        "reproducible: {} files byte-identical between {} and a clean build of a copy at another path",
        list_files(&first.out_dir)?.len(),
        first.out_dir.display()
    );
    // The second target directory is large and only needed for this check.
    fs::remove_dir_all(&copy_target).ok();
    Ok(())
}

/// Copies the files git knows about (tracked, plus new files not ignored: the working tree as it
/// is, so the check compares like with like before a commit) to `to`. `node_modules` (the pinned
/// wasm-opt) is linked, not copied.
fn copy_sources(root: &Path, to: &Path) -> Result<()> {
    let output = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .context("running git ls-files (the reproducibility check copies the git tree)")?;
    ensure!(output.status.success(), "git ls-files failed");
    for name in output.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).context("a file name that is not UTF-8")?;
        let from = root.join(name);
        if !from.is_file() {
            continue; // deleted in the working tree but still in the index
        }
        let dest = to.join(name);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(&from, &dest).with_context(|| format!("copying {name}"))?;
    }
    let node_modules = root.join("node_modules");
    if node_modules.is_dir() {
        std::os::unix::fs::symlink(&node_modules, to.join("node_modules"))
            .context("linking node_modules into the copy")?;
    }
    Ok(())
}

/// Every file under `dir`, by relative path.
fn list_files(dir: &Path) -> Result<BTreeMap<PathBuf, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in
            fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.insert(relative.to_path_buf(), path.clone());
            }
        }
    }
    Ok(files)
}

/// A line per difference: a file only in one build, or with other bytes.
fn compare_dirs(a: &Path, b: &Path) -> Result<Vec<String>> {
    let left = list_files(a)?;
    let right = list_files(b)?;
    let mut differences = Vec::new();
    for (name, path) in &left {
        match right.get(name) {
            None => differences.push(format!("{} only in the first build", name.display())),
            Some(other) => {
                if fs::read(path)? != fs::read(other)? {
                    differences.push(format!("{} differs", name.display()));
                }
            }
        }
    }
    for name in right.keys().filter(|name| !left.contains_key(*name)) {
        differences.push(format!("{} only in the second build", name.display()));
    }
    Ok(differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_changed_missing_and_extra_files() {
        let base = std::env::temp_dir().join(format!("sotto-repro-test-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::create_dir_all(b.join("sub")).unwrap();
        fs::write(a.join("same"), b"x").unwrap();
        fs::write(b.join("same"), b"x").unwrap();
        fs::write(a.join("sub/changed"), b"1").unwrap();
        fs::write(b.join("sub/changed"), b"2").unwrap();
        fs::write(a.join("only-a"), b"").unwrap();
        fs::write(b.join("only-b"), b"").unwrap();
        let diffs = compare_dirs(&a, &b).unwrap();
        fs::remove_dir_all(&base).unwrap();
        assert_eq!(
            diffs,
            [
                "only-a only in the first build",
                "sub/changed differs",
                "only-b only in the second build"
            ]
        );
    }
}
