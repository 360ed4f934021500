//! SASL SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) for the client side.
//!
//! Written here rather than taken from the `sasl` crate because that crate generates its nonce
//! with a global RNG (we are sans-IO: the caller passes the RNG), does not check that the
//! server nonce extends ours, does not escape `=`/`,` in user names and does not bound the
//! iteration count. The primitives (HMAC, PBKDF2, SHA-1/SHA-256) come from RustCrypto.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Below this the password hash is too cheap to brute-force offline (RFC 7677 §4 recommends
/// at least 4096); such a server is refused.
pub const MIN_ITERATIONS: u32 = 4096;
/// Above this a (malicious) server could make the client burn seconds of CPU per login.
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// Longest server message we parse.
const MAX_SERVER_MESSAGE: usize = 4096;

/// The hash function of a SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-1 (mandatory to implement in XMPP).
    Sha1,
    /// SCRAM-SHA-256 (preferred).
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        Zeroizing::new(match self {
            ScramHash::Sha1 => match Hmac::<sha1::Sha1>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            ScramHash::Sha256 => match Hmac::<sha2::Sha256>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        })
    }

    fn hash(self, data: &[u8]) -> Zeroizing<Vec<u8>> {
        use sha2::Digest as _;
        Zeroizing::new(match self {
            ScramHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        })
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![
            0u8;
            match self {
                ScramHash::Sha1 => 20,
                ScramHash::Sha256 => 32,
            }
        ]);
        match self {
            ScramHash::Sha1 => {
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out)
            }
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// Why SCRAM failed on our side. (The server saying "not authorized" is a SASL failure, not this.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// The password contains characters SASLprep prohibits.
    #[error("the password contains characters that cannot be used")]
    PasswordNotAllowed,
    /// The server's message is not valid SCRAM.
    #[error("the server sent an invalid SCRAM message")]
    Malformed,
    /// The server nonce does not extend ours: a replay or a broken server.
    #[error("the server's SCRAM nonce does not match ours")]
    NonceMismatch,
    /// The iteration count is below [`MIN_ITERATIONS`] or above [`MAX_ITERATIONS`].
    #[error("the server stores passwords with an unsafe iteration count ({0})")]
    IterationCount(u32),
    /// The server requires an extension we do not know (`m=`).
    #[error("the server requires an unsupported SCRAM extension")]
    UnsupportedExtension,
    /// The server could not prove it knows the password: it is not the real server.
    #[error("the server could not prove that it knows your password")]
    ServerSignature,
    /// The server reported a SCRAM error (`e=`).
    #[error("the server rejected the login ({0})")]
    ServerError(String),
    /// A message arrived in the wrong state.
    #[error("unexpected SCRAM message")]
    State,
}

enum State {
    Initial,
    SentFirst {
        client_first_bare: String,
    },
    SentFinal {
        server_signature: Zeroizing<Vec<u8>>,
    },
    Done,
}

/// A client-side SCRAM exchange.
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: Zeroizing<String>,
    nonce: String,
    state: State,
}

impl core::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `username` (the JID's localpart) with a fresh random nonce.
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: &str,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, ScramError> {
        let mut nonce_bytes = [0u8; 24];
        rng.fill_bytes(&mut nonce_bytes);
        let nonce = BASE64.encode(nonce_bytes);
        Self::with_nonce(hash, username, password, nonce)
    }

    /// Starts an exchange with a given nonce (for test vectors).
    pub fn with_nonce(
        hash: ScramHash,
        username: &str,
        password: &str,
        nonce: String,
    ) -> Result<Self, ScramError> {
        let password =
            crate::jid::saslprep(password).map_err(|_| ScramError::PasswordNotAllowed)?;
        Ok(Self {
            hash,
            username: username.replace('=', "=3D").replace(',', "=2C"),
            password,
            nonce,
            state: State::Initial,
        })
    }

    /// The mechanism name for `<auth mechanism=…>`.
    pub fn mechanism(&self) -> &'static str {
        self.hash.mechanism()
    }

    /// The client-first message (sent inside `<auth/>`).
    pub fn client_first(&mut self) -> Vec<u8> {
        let client_first_bare = format!("n={},r={}", self.username, self.nonce);
        let message = format!("n,,{client_first_bare}").into_bytes();
        self.state = State::SentFirst { client_first_bare };
        message
    }

    /// Answers the server-first message (from `<challenge/>`) with the client-final message.
    pub fn handle_server_first(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::SentFirst { client_first_bare } = &self.state else {
            return Err(ScramError::State);
        };
        if server_first.len() > MAX_SERVER_MESSAGE {
            return Err(ScramError::Malformed);
        }
        let server_first = core::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        let attributes = parse_attributes(server_first)?;
        if attributes.iter().any(|(k, _)| *k == 'm') {
            return Err(ScramError::UnsupportedExtension);
        }
        if let Some((_, e)) = attributes.iter().find(|(k, _)| *k == 'e') {
            return Err(ScramError::ServerError((*e).to_owned()));
        }
        let get = |key: char| {
            attributes
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or(ScramError::Malformed)
        };
        let nonce = get('r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = BASE64
            .decode(get('s')?)
            .map_err(|_| ScramError::Malformed)?;
        if salt.is_empty() {
            return Err(ScramError::Malformed);
        }
        let iterations: u32 = get('i')?.parse().map_err(|_| ScramError::Malformed)?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::IterationCount(iterations));
        }
        let hash = self.hash;
        let salted = hash.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.hash(&client_key);
        let client_final_without_proof = format!("c=biws,r={nonce}");
        let auth_message =
            format!("{client_first_bare},{server_first},{client_final_without_proof}");
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let mut proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        let server_signature = hash.hmac(&server_key, auth_message.as_bytes());
        let message = format!("{client_final_without_proof},p={}", BASE64.encode(&proof));
        proof.zeroize();
        self.state = State::SentFinal { server_signature };
        Ok(message.into_bytes())
    }

    /// Verifies the server-final message (from `<success/>` or a last `<challenge/>`).
    pub fn handle_server_final(&mut self, server_final: &[u8]) -> Result<(), ScramError> {
        let State::SentFinal { server_signature } = &self.state else {
            return Err(ScramError::State);
        };
        if server_final.len() > MAX_SERVER_MESSAGE {
            return Err(ScramError::Malformed);
        }
        let text = core::str::from_utf8(server_final).map_err(|_| ScramError::Malformed)?;
        let attributes = parse_attributes(text)?;
        if let Some((_, e)) = attributes.iter().find(|(k, _)| *k == 'e') {
            return Err(ScramError::ServerError((*e).to_owned()));
        }
        let verifier = attributes
            .iter()
            .find(|(k, _)| *k == 'v')
            .map(|(_, v)| *v)
            .ok_or(ScramError::Malformed)?;
        let verifier = BASE64.decode(verifier).map_err(|_| ScramError::Malformed)?;
        if verifier.len() != server_signature.len()
            || !bool::from(verifier.ct_eq(server_signature.as_slice()))
        {
            return Err(ScramError::ServerSignature);
        }
        self.state = State::Done;
        Ok(())
    }

    /// Whether the server has proven itself.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// `k=v,k=v` with single-letter keys.
fn parse_attributes(text: &str) -> Result<Vec<(char, &str)>, ScramError> {
    text.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(key), Some('=')) if key.is_ascii_alphabetic() => Ok((key, &part[2..])),
                _ => Err(ScramError::Malformed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        BASE64.decode(s).unwrap()
    }

    /// RFC 5802 §5.
    #[test]
    fn rfc5802_sha1_vector() {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL".into(),
        )
        .unwrap();
        assert_eq!(c.client_first(), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .handle_server_first(
                b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.handle_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();
        assert!(c.is_done());
    }

    /// RFC 7677 §3.
    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        )
        .unwrap();
        c.client_first();
        let fin = c
            .handle_server_first(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert!(String::from_utf8(fin)
            .unwrap()
            .ends_with(",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
        c.handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    fn started() -> ScramClient {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha1, "user", "pencil", "abc".into()).unwrap();
        c.client_first();
        c
    }

    #[test]
    fn refuses_bad_server_messages() {
        let cases: [(&[u8], ScramError); 6] = [
            (
                b"r=zzzdef,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                b"r=abc,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1000",
                ScramError::IterationCount(1000),
            ),
            (
                b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4000000000",
                ScramError::IterationCount(4_000_000_000),
            ),
            (
                b"m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096",
                ScramError::UnsupportedExtension,
            ),
            (b"garbage", ScramError::Malformed),
        ];
        for (input, expected) in cases {
            assert_eq!(started().handle_server_first(input), Err(expected));
        }
    }

    #[test]
    fn wrong_server_signature_is_refused() {
        let mut c = started();
        c.handle_server_first(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            c.handle_server_final(&b64("dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9")),
            Err(ScramError::ServerSignature)
        );
        assert!(!c.is_done());
    }

    #[test]
    fn usernames_are_escaped_and_passwords_prepared() {
        let mut c = ScramClient::with_nonce(ScramHash::Sha1, "a=b,c", "pw", "n".into()).unwrap();
        assert_eq!(c.client_first(), b"n,,n=a=3Db=2Cc,r=n");
        assert!(ScramClient::with_nonce(ScramHash::Sha1, "u", "bad\u{0007}", "n".into()).is_err());
    }

    #[test]
    fn out_of_order_messages_are_refused() {
        let mut c = ScramClient::with_nonce(ScramHash::Sha1, "u", "p", "n".into()).unwrap();
        assert_eq!(c.handle_server_final(b"v=AAAA"), Err(ScramError::State));
        assert_eq!(
            c.handle_server_first(b"r=nx,s=AAAA,i=4096"),
            Err(ScramError::State)
        );
    }
}
