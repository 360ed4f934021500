//! Leak checks: what a test wrote into the world (Prosody's data directory, a CLI store, a browser
//! profile) is scanned for texts that must never be there, such as message bodies that were sent
//! end-to-end encrypted. Every scan should have a positive control in its test (a planted or
//! knowingly stored text that the scan must find), or a broken scan would pass silently.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every regular file under `dir`, recursively (sockets and other special files are skipped:
/// Prosody keeps its admin socket in its data directory).
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))?
            {
                stack.push(entry?.path());
            }
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The contents of every regular file under `dir`, concatenated with a newline between files.
pub fn all_bytes(dir: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for file in files(dir)? {
        out.extend(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        out.push(b'\n');
    }
    Ok(out)
}

/// Whether `needle` occurs in `haystack` as bytes.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_in_nested_files_only() {
        let dir = crate::test_dir("scan-self-test").unwrap();
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/file"), b"xx secret yy").unwrap();
        let bytes = all_bytes(&dir).unwrap();
        assert!(contains(&bytes, "secret"));
        assert!(!contains(&bytes, "absent"));
        assert!(!contains(&bytes, ""));
        assert_eq!(files(&dir).unwrap().len(), 1);
    }
}
