//! End-to-end test fixtures for Sotto, shared by the test suites and `cargo xtask demo`:
//!
//! - [`prosody`]: a throwaway Prosody (config, private CA, data and log in one directory).
//! - [`app`]: driving the web app in a browser test (site location, waits, typing, clicks).
//! - [`browser`]: headless Debian Chromium driven through chromedriver with fantoccini.
//! - [`bridge`]: the real bridge in-process in front of a fixture Prosody.
//! - [`wsclient`], [`http`]: raw RFC 7395 / HTTP clients for assertions.
//! - [`pypeer`]: the Python (slixmpp, slixmpp-omemo) interop peer and its pinned venv.
//! - [`scan`]: leak checks of directories for texts that must not be there.
//! - [`ports`]: free loopback ports, `target/` location, scratch directories, process helpers.
//!
//! Every fixture listens on 127.0.0.1 only, keeps its files under the workspace's `target/`,
//! and stops the processes it started when dropped.

pub mod app;
pub mod bridge;
pub mod browser;
pub mod http;
pub mod pep;
pub mod ports;
pub mod prosody;
pub mod pypeer;
pub mod scan;
pub mod wsclient;

pub use ports::{free_loopback_port, target_dir, test_dir};
