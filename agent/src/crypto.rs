//! Keys and sealing. The archive key never leaves the device unwrapped.
//!
//! - The archive key is 32 random bytes. From it, blake3 `derive_key` makes an
//!   encryption key and a nonce key.
//! - A chunk is sealed as `version | flags | nonce (24) | XChaCha20-Poly1305
//!   ciphertext`, where the nonce is the keyed blake3 of the plaintext:
//!   identical chunks seal to identical blocks (dedupe), different ones never
//!   share a nonce. The body is zstd-compressed first when that helps.
//! - The archive key is stored wrapped under a key derived from the
//!   passphrase with Argon2id (19 MiB, 2 passes by default; the parameters
//!   are kept in the key file), as a block the server names `key`.

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 1;
/// Largest plaintext a block may open to (a chunk is at most 4 MiB; manifest
/// parts at most 8 MiB).
const MAX_PLAIN: usize = 16 << 20;

/// The keys of one archive.
pub struct Keys {
    master: [u8; 32],
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
}

impl Keys {
    /// A fresh random archive key.
    pub fn generate() -> anyhow::Result<Self> {
        let mut master = [0u8; 32];
        getrandom::fill(&mut master).context("read OS randomness")?;
        Ok(Self::from_master(master))
    }

    fn from_master(master: [u8; 32]) -> Self {
        let enc = blake3::derive_key("coffer-agent v1 block encryption key", &master);
        let nonce_key = blake3::derive_key("coffer-agent v1 block nonce key", &master);
        Self {
            master,
            cipher: XChaCha20Poly1305::new(&enc.into()),
            nonce_key,
        }
    }

    /// Seal a plaintext into a block (deterministic for a given key).
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let tag = blake3::keyed_hash(&self.nonce_key, plain);
        let nonce = XNonce::from_slice(&tag.as_bytes()[..24]);
        let compressed = zstd::bulk::compress(plain, 3)
            .ok()
            .filter(|c| c.len() + 64 < plain.len());
        let (flags, body) = match &compressed {
            Some(c) => (FLAG_ZSTD, c.as_slice()),
            None => (0, plain),
        };
        let aad = [VERSION, flags];
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a bounded buffer cannot fail");
        let mut out = Vec::with_capacity(2 + 24 + ct.len());
        out.extend_from_slice(&aad);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open a block sealed with this key: fails if it was altered or sealed
    /// under another key.
    pub fn open(&self, blob: &[u8]) -> anyhow::Result<Vec<u8>> {
        if blob.len() < 2 + 24 + 16 || blob[0] != VERSION {
            bail!("not a block sealed by this agent (bad header)");
        }
        let (aad, rest) = blob.split_at(2);
        let (nonce, ct) = rest.split_at(24);
        let body = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| {
                anyhow::anyhow!(
                    "authentication failed: the block was altered or belongs to another key"
                )
            })?;
        if aad[1] & FLAG_ZSTD != 0 {
            zstd::bulk::decompress(&body, MAX_PLAIN).context("decompress block")
        } else {
            Ok(body)
        }
    }

    /// Wrap the archive key under `passphrase`.
    pub fn wrap(&self, passphrase: &str) -> anyhow::Result<Vec<u8>> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut salt).context("read OS randomness")?;
        getrandom::fill(&mut nonce).context("read OS randomness")?;
        let kdf = Kdf::default();
        let kek = kdf.derive(passphrase, &salt)?;
        let wrapped = XChaCha20Poly1305::new(&kek.into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &self.master,
                    aad: b"coffer-agent key v1",
                },
            )
            .map_err(|_| anyhow::anyhow!("wrap the archive key"))?;
        let file = KeyFile {
            version: 1,
            kdf,
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            wrapped: hex::encode(wrapped),
        };
        Ok(serde_json::to_vec_pretty(&file)?)
    }

    /// Unwrap an archive key with `passphrase`; a wrong passphrase is a clear
    /// error, never a wrong key.
    pub fn unwrap(key_file: &[u8], passphrase: &str) -> anyhow::Result<Self> {
        let f: KeyFile = serde_json::from_slice(key_file)
            .context("the key block is not a coffer-agent key file")?;
        if f.version != 1 {
            bail!(
                "key file version {} is newer than this agent understands",
                f.version
            );
        }
        let salt = hex::decode(&f.salt).context("key file salt")?;
        let nonce = hex::decode(&f.nonce).context("key file nonce")?;
        let wrapped = hex::decode(&f.wrapped).context("key file body")?;
        if nonce.len() != 24 {
            bail!("key file nonce has the wrong length");
        }
        let kek = f.kdf.derive(passphrase, &salt)?;
        let master = XChaCha20Poly1305::new(&kek.into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &wrapped,
                    aad: b"coffer-agent key v1",
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("wrong passphrase: it does not unlock this archive's key")
            })?;
        let master: [u8; 32] = master
            .try_into()
            .map_err(|_| anyhow::anyhow!("key file holds a key of the wrong length"))?;
        Ok(Self::from_master(master))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    kdf: Kdf,
    salt: String,
    nonce: String,
    wrapped: String,
}

/// Argon2id parameters, kept in the key file so they can be raised later.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl Default for Kdf {
    fn default() -> Self {
        Self {
            algorithm: "argon2id".into(),
            // OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Kdf {
    fn derive(&self, passphrase: &str, salt: &[u8]) -> anyhow::Result<[u8; 32]> {
        if self.algorithm != "argon2id" {
            bail!(
                "key file uses {:?}; this agent knows argon2id",
                self.algorithm
            );
        }
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| anyhow::anyhow!("key file KDF parameters: {e}"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(passphrase.as_bytes(), salt, &mut out)
            .map_err(|e| anyhow::anyhow!("derive key from passphrase: {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_deterministic_and_tamper_evident() {
        let k = Keys::generate().unwrap();
        let plain = vec![7u8; 100_000];
        let a = k.seal(&plain);
        assert_eq!(a, k.seal(&plain), "same chunk, same block (dedupe)");
        assert!(a.len() < plain.len(), "compressible data is compressed");
        assert_eq!(k.open(&a).unwrap(), plain);
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open(&bad).is_err());
        let other = Keys::generate().unwrap();
        assert_ne!(other.seal(&plain), a, "another key seals differently");
        assert!(other.open(&a).is_err());
    }

    #[test]
    fn a_wrong_passphrase_is_refused() {
        let k = Keys::generate().unwrap();
        let file = k.wrap("correct horse").unwrap();
        let back = Keys::unwrap(&file, "correct horse").unwrap();
        assert_eq!(back.master, k.master);
        let err = Keys::unwrap(&file, "wrong").err().unwrap().to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
    }

    #[test]
    fn the_key_file_records_its_kdf_cost_and_older_costs_still_unwrap() {
        let k = Keys::generate().unwrap();
        let file: serde_json::Value =
            serde_json::from_slice(&k.wrap("correct horse").unwrap()).unwrap();
        assert_eq!(file["kdf"]["memory_kib"], 19 * 1024);
        assert_eq!(file["kdf"]["iterations"], 2);
        // A key wrapped at another cost (an older agent's 64 MiB / 3) opens
        // with the parameters its file states.
        let mut kf: KeyFile = serde_json::from_value(file).unwrap();
        kf.kdf.memory_kib = 64 * 1024;
        kf.kdf.iterations = 3;
        let salt = hex::decode(&kf.salt).unwrap();
        let nonce = hex::decode(&kf.nonce).unwrap();
        let kek = kf.kdf.derive("correct horse", &salt).unwrap();
        kf.wrapped = hex::encode(
            XChaCha20Poly1305::new(&kek.into())
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &k.master,
                        aad: b"coffer-agent key v1",
                    },
                )
                .unwrap(),
        );
        let back = Keys::unwrap(&serde_json::to_vec(&kf).unwrap(), "correct horse").unwrap();
        assert_eq!(back.master, k.master);
    }
}
