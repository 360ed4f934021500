//! Encryption at rest for Sotto's personal ("my device") mode, sans-IO.
//!
//! The browser stores everything it keeps (OMEMO identity and sessions, roster cache, message
//! history) as records in IndexedDB. Nothing readable may reach the disk, so:
//!
//! - a random 256-bit **data key** encrypts every record with XChaCha20-Poly1305 (random 192-bit
//!   nonce per record, so no nonce bookkeeping), the record's name bound as associated data so
//!   records cannot be swapped;
//! - the data key is stored only **wrapped**: encrypted under a key derived with Argon2id from
//!   the user's passphrase (the account password by default), with the parameters recorded next
//!   to it so they can be raised later without breaking old stores;
//! - a passphrase change re-wraps the data key; no record is re-encrypted.
//!
//! [`PassphraseBox`] is the same construction for a single small secret that has to be readable
//! with nothing but the passphrase (e.g. the list of temporary kiosk devices kept in a private PEP
//! node, so that the server stores only an opaque blob).
//!
//! No I/O, no clock, no global RNG: callers pass an `RngCore + CryptoRng`. Secrets are zeroized on
//! drop and never printed by `Debug`. Every decoder bounds its input and returns an error, never
//! panics (fuzzed: `fuzz/fuzz_targets/vault_records.rs`).
//!
//! ```
//! use sotto_vault::{KdfParams, Vault};
//! let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
//! # use rand_core::SeedableRng as _;
//! let (vault, wrapped) = Vault::create(b"correct horse", KdfParams::MINIMUM, &mut rng)?;
//! let sealed = vault.seal("history/bob@example.org", b"hello", &mut rng)?;
//! let again = Vault::unlock(b"correct horse", &wrapped)?;
//! assert_eq!(&*again.open("history/bob@example.org", &sealed)?, b"hello");
//! # Ok::<(), sotto_vault::VaultError>(())
//! ```
#![forbid(unsafe_code)]
// Untrusted bytes reach this crate: no indexing that could panic (tests excepted, clippy.toml).
#![deny(clippy::indexing_slicing)]
#![deny(missing_docs)]

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of the data key and of derived keys.
pub const KEY_BYTES: usize = 32;
/// Bytes of an XChaCha20 nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// Bytes of an Argon2 salt.
pub const SALT_BYTES: usize = 16;
/// The largest record [`Vault::seal`] accepts and [`Vault::open`] decodes (the whole message
/// history of one conversation must fit; anything larger is refused, not allocated).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// The largest secret a [`PassphraseBox`] holds.
pub const MAX_BOX_BYTES: usize = 64 * 1024;

const RECORD_MAGIC: &[u8; 4] = b"SVR1";
const BOX_MAGIC: &[u8; 4] = b"SVB1";
/// Argon2id, version 0x13: the only KDF so far; the byte leaves room for another.
const KDF_ARGON2ID: u8 = 1;
const RECORD_AAD_PREFIX: &[u8] = b"sotto-vault record v1\0";
const DATA_KEY_CONTEXT: &[u8] = b"sotto-vault data key v1";
/// magic, kdf, memory, iterations, parallelism, salt, nonce.
const BOX_HEADER_BYTES: usize = 4 + 1 + 4 + 4 + 4 + SALT_BYTES + NONCE_BYTES;

/// What can go wrong. No variant carries secret material or record contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The passphrase does not open this store (or the wrapped key was altered).
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A record failed authentication: altered, truncated, or stored under another name.
    #[error("a stored record is damaged or does not belong here")]
    Corrupt,
    /// The bytes are not in a format this version knows.
    #[error("stored data in an unknown format")]
    UnknownFormat,
    /// Key-derivation parameters outside the accepted range (see [`KdfParams::check`]).
    #[error("key-derivation parameters out of range: {0}")]
    BadParams(&'static str),
    /// A record or secret larger than the documented maximum.
    #[error("too large: {0} bytes")]
    TooLarge(usize),
}

/// Argon2id cost parameters, stored next to every wrapped key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// What the browser uses: OWASP's first Argon2id recommendation (19 MiB, 2 passes, 1 lane).
    /// wasm runs single-threaded, so more lanes would only cost time. Natively an unlock takes
    /// about 18 ms (`cargo bench -p sotto-vault`); wasm is typically 2–4× slower, well under a
    /// second at login. Measured in headless Chromium on the test machine: opening personal
    /// mode's saved data at sign-in (IndexedDB reads, this KDF, decryption) takes about 100 ms
    /// (`tests/tests/browser_kiosk.rs` writes it to `target/measurements/browser_kiosk.txt`).
    pub const BROWSER: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// The cheapest parameters accepted (8 MiB, 1 pass): for tests. A store found with less is
    /// refused, so an attacker who can write the store cannot downgrade it to a trivial KDF.
    pub const MINIMUM: Self = Self {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    /// The dearest accepted: a stored value above this is refused rather than allocated.
    pub const MAXIMUM: Self = Self {
        memory_kib: 1024 * 1024,
        iterations: 16,
        parallelism: 4,
    };

    /// Checks the parameters lie within [`Self::MINIMUM`]..=[`Self::MAXIMUM`].
    pub fn check(&self) -> Result<(), VaultError> {
        let (min, max) = (Self::MINIMUM, Self::MAXIMUM);
        if !(min.memory_kib..=max.memory_kib).contains(&self.memory_kib) {
            return Err(VaultError::BadParams("memory"));
        }
        if !(min.iterations..=max.iterations).contains(&self.iterations) {
            return Err(VaultError::BadParams("iterations"));
        }
        if !(min.parallelism..=max.parallelism).contains(&self.parallelism) {
            return Err(VaultError::BadParams("parallelism"));
        }
        Ok(())
    }

    fn derive(
        &self,
        passphrase: &[u8],
        salt: &[u8; SALT_BYTES],
    ) -> Result<Zeroizing<[u8; KEY_BYTES]>, VaultError> {
        self.check()?;
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_BYTES),
        )
        .map_err(|_| VaultError::BadParams("rejected by argon2"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        argon
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|_| VaultError::BadParams("rejected by argon2"))?;
        Ok(key)
    }
}

/// A small secret encrypted under a passphrase (Argon2id → XChaCha20-Poly1305). The header
/// (format, parameters, salt, nonce) and a caller-chosen context are authenticated, so neither the
/// parameters nor the purpose can be swapped.
#[derive(Clone, PartialEq, Eq)]
pub struct PassphraseBox {
    params: KdfParams,
    salt: [u8; SALT_BYTES],
    nonce: [u8; NONCE_BYTES],
    ciphertext: Vec<u8>,
}

impl core::fmt::Debug for PassphraseBox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PassphraseBox")
            .field("params", &self.params)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl PassphraseBox {
    /// Encrypts `secret` under `passphrase` for `context` (which must be given again to open it).
    pub fn seal(
        passphrase: &[u8],
        params: KdfParams,
        context: &[u8],
        secret: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, VaultError> {
        if secret.len() > MAX_BOX_BYTES {
            return Err(VaultError::TooLarge(secret.len()));
        }
        let mut salt = [0u8; SALT_BYTES];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        let key = params.derive(passphrase, &salt)?;
        let mut sealed = Self {
            params,
            salt,
            nonce,
            ciphertext: Vec::new(),
        };
        let aad = sealed.aad(context);
        sealed.ciphertext = cipher(&key)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::TooLarge(secret.len()))?;
        Ok(sealed)
    }

    /// Decrypts with `passphrase` and the `context` it was sealed for.
    pub fn open(
        &self,
        passphrase: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self.params.derive(passphrase, &self.salt)?;
        let aad = self.aad(context);
        cipher(&key)
            .decrypt(
                XNonce::from_slice(&self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::WrongPassphrase)
    }

    /// The parameters it was sealed with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The stored form: header, then ciphertext with tag.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decodes the stored form; checks the format and the parameter bounds, not the passphrase.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() > BOX_HEADER_BYTES + MAX_BOX_BYTES + TAG_BYTES {
            return Err(VaultError::TooLarge(bytes.len()));
        }
        let mut reader = Reader(bytes);
        if reader.take::<4>()? != *BOX_MAGIC || reader.take::<1>()? != [KDF_ARGON2ID] {
            return Err(VaultError::UnknownFormat);
        }
        let params = KdfParams {
            memory_kib: u32::from_le_bytes(reader.take()?),
            iterations: u32::from_le_bytes(reader.take()?),
            parallelism: u32::from_le_bytes(reader.take()?),
        };
        params.check()?;
        let salt = reader.take()?;
        let nonce = reader.take()?;
        if reader.0.len() < TAG_BYTES {
            return Err(VaultError::UnknownFormat);
        }
        Ok(Self {
            params,
            salt,
            nonce,
            ciphertext: reader.0.to_vec(),
        })
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BOX_HEADER_BYTES + self.ciphertext.len());
        out.extend_from_slice(BOX_MAGIC);
        out.push(KDF_ARGON2ID);
        out.extend_from_slice(&self.params.memory_kib.to_le_bytes());
        out.extend_from_slice(&self.params.iterations.to_le_bytes());
        out.extend_from_slice(&self.params.parallelism.to_le_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.nonce);
        out
    }

    fn aad(&self, context: &[u8]) -> Vec<u8> {
        let mut aad = self.header();
        aad.extend_from_slice(context);
        aad
    }
}

/// The data key wrapped under the passphrase: what the store keeps instead of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey(PassphraseBox);

impl WrappedKey {
    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Decodes the stored form (format and parameter bounds only).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let inner = PassphraseBox::from_bytes(bytes)?;
        if inner.ciphertext.len() != KEY_BYTES + TAG_BYTES {
            return Err(VaultError::UnknownFormat);
        }
        Ok(Self(inner))
    }

    /// The Argon2id parameters recorded with it.
    pub fn params(&self) -> KdfParams {
        self.0.params
    }
}

/// An unlocked store: holds the data key (zeroized on drop) and seals/opens records.
pub struct Vault {
    data_key: Zeroizing<[u8; KEY_BYTES]>,
}

impl core::fmt::Debug for Vault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Vault { .. }")
    }
}

impl Vault {
    /// A new store: a fresh random data key, and its wrapped form to keep.
    pub fn create(
        passphrase: &[u8],
        params: KdfParams,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, WrappedKey), VaultError> {
        let mut data_key = Zeroizing::new([0u8; KEY_BYTES]);
        rng.fill_bytes(data_key.as_mut());
        let vault = Self { data_key };
        let wrapped = vault.rewrap(passphrase, params, rng)?;
        Ok((vault, wrapped))
    }

    /// Opens a store with its passphrase. A wrong passphrase is [`VaultError::WrongPassphrase`]
    /// and changes nothing.
    pub fn unlock(passphrase: &[u8], wrapped: &WrappedKey) -> Result<Self, VaultError> {
        let mut opened = wrapped.0.open(passphrase, DATA_KEY_CONTEXT)?;
        let mut data_key = Zeroizing::new([0u8; KEY_BYTES]);
        if opened.len() != KEY_BYTES {
            opened.zeroize();
            return Err(VaultError::UnknownFormat);
        }
        data_key.copy_from_slice(&opened);
        Ok(Self { data_key })
    }

    /// The data key wrapped under a (new) passphrase and parameters: a passphrase change stores
    /// this in place of the old wrapped key; no record changes.
    pub fn rewrap(
        &self,
        passphrase: &[u8],
        params: KdfParams,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<WrappedKey, VaultError> {
        PassphraseBox::seal(
            passphrase,
            params,
            DATA_KEY_CONTEXT,
            self.data_key.as_ref(),
            rng,
        )
        .map(WrappedKey)
    }

    /// Encrypts one record stored under `name`.
    pub fn seal(
        &self,
        name: &str,
        plaintext: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, VaultError> {
        if plaintext.len() > MAX_RECORD_BYTES {
            return Err(VaultError::TooLarge(plaintext.len()));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        let ciphertext = cipher(&self.data_key)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &record_aad(name),
                },
            )
            .map_err(|_| VaultError::TooLarge(plaintext.len()))?;
        let mut out = Vec::with_capacity(4 + NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(RECORD_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a record stored under `name`. A record moved to another name, altered or cut
    /// short is [`VaultError::Corrupt`].
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() > 4 + NONCE_BYTES + MAX_RECORD_BYTES + TAG_BYTES {
            return Err(VaultError::TooLarge(sealed.len()));
        }
        let mut reader = Reader(sealed);
        if reader.take::<4>()? != *RECORD_MAGIC {
            return Err(VaultError::UnknownFormat);
        }
        let nonce: [u8; NONCE_BYTES] = reader.take()?;
        cipher(&self.data_key)
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: reader.0,
                    aad: &record_aad(name),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Corrupt)
    }
}

fn cipher(key: &[u8; KEY_BYTES]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

fn record_aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RECORD_AAD_PREFIX.len() + name.len());
    aad.extend_from_slice(RECORD_AAD_PREFIX);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// A cursor over untrusted bytes that never panics.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], VaultError> {
        let (head, rest) = self
            .0
            .split_at_checked(N)
            .ok_or(VaultError::UnknownFormat)?;
        self.0 = rest;
        head.try_into().map_err(|_| VaultError::UnknownFormat)
    }
}

#[cfg(test)]
mod tests;
