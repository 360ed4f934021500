//! SCRAM (RFC 5802 / RFC 7677) messages from an untrusted server: server-first and server-final.
//! Malformed input, absurd iteration counts and wrong signatures must be errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_session::scram::{ScramClient, ScramHash};

/// The client nonce of RFC 7677's example, so seeds from the RFC reach the later steps.
const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let hash = if selector & 1 == 0 { ScramHash::Sha1 } else { ScramHash::Sha256 };
    // server-first and server-final are separated by a NUL byte.
    let mut parts = rest.splitn(2, |&b| b == 0);
    let server_first = parts.next().unwrap_or_default();
    let server_final = parts.next().unwrap_or_default();
    let Ok(mut client) = ScramClient::with_nonce(hash, "user", "pencil", NONCE.to_owned()) else {
        return;
    };
    let _ = client.client_first();
    if client.handle_server_first(server_first).is_ok() {
        let verified = client.handle_server_final(server_final).is_ok();
        assert_eq!(verified, client.is_done());
    } else {
        assert!(client.handle_server_final(server_final).is_err());
    }
});
