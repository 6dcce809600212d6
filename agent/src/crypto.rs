//! Keys and sealing. The archive key never leaves the device unwrapped.
//!
//! - The archive key is 32 random bytes. From it, blake3 `derive_key` makes a
//!   block key-derivation key and a nonce key.
//! - A chunk is sealed as `version | flags | nonce (24) | ciphertext | tag`.
//!   The 24-byte nonce is the keyed blake3 of the plaintext, so identical
//!   chunks seal to identical blocks (dedupe) and different ones never share
//!   a nonce. Version 2 (written now) encrypts with AES-256-GCM under a key
//!   of its own for every block, the keyed blake3 of that nonce (the
//!   extended-nonce construction of XAES-256-GCM): no key ever sees two
//!   plaintexts, so the 96-bit GCM nonce can be fixed. AES-GCM runs on the
//!   CPU's AES instructions (ring, already linked for TLS: VAES where the
//!   CPU has it) at about six times the speed of XChaCha20-Poly1305 here.
//!   Version 1 blocks (XChaCha20-Poly1305 under the archive's encryption
//!   key) still open. The body is zstd-compressed first when that helps;
//!   the header bytes are authenticated as associated data.
//! - The archive key is stored wrapped under a key derived from the
//!   passphrase with Argon2id (19 MiB, 2 passes by default; the parameters
//!   are kept in the key file), as a block the server names `key`.

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};

/// XChaCha20-Poly1305 under the archive's encryption key (opened, no
/// longer written).
const V1_XCHACHA: u8 = 1;
/// AES-256-GCM under a per-block key.
const V2_AES_GCM: u8 = 2;
const FLAG_ZSTD: u8 = 1;
const HEADER: usize = 2 + 24;
const TAG: usize = 16;
/// Largest plaintext a block may open to (a chunk is at most 4 MiB; manifest
/// parts at most 8 MiB).
const MAX_PLAIN: usize = 16 << 20;
/// Compression is tried on a sample first: slices spread over the chunk.
const PROBE_SLICES: usize = 4;
const PROBE_SLICE: usize = 16 << 10;

/// The keys of one archive.
pub struct Keys {
    master: [u8; 32],
    /// Version 1 blocks.
    cipher: XChaCha20Poly1305,
    /// Version 2: each block's AES key is the keyed blake3 of its nonce.
    block_kdk: [u8; 32],
    nonce_key: [u8; 32],
    /// Compress bodies that gain from it (`device_defaults.compression`).
    compress: bool,
}

impl Keys {
    /// Seal without compressing (`device_defaults.compression = off`). The
    /// blocks differ from compressed ones, so content already stored
    /// compressed is uploaded again once.
    pub fn set_compression(&mut self, on: bool) {
        self.compress = on;
    }

    /// A fresh random archive key.
    pub fn generate() -> anyhow::Result<Self> {
        let mut master = [0u8; 32];
        getrandom::fill(&mut master).context("read OS randomness")?;
        Ok(Self::from_master(master))
    }

    /// The archive key itself, for sealing it to an escrow key.
    pub(crate) fn master(&self) -> &[u8; 32] {
        &self.master
    }

    pub(crate) fn from_master(master: [u8; 32]) -> Self {
        let enc = blake3::derive_key("coffer-agent v1 block encryption key", &master);
        let block_kdk = blake3::derive_key("coffer-agent v2 block key derivation key", &master);
        let nonce_key = blake3::derive_key("coffer-agent v1 block nonce key", &master);
        Self {
            master,
            cipher: XChaCha20Poly1305::new(&enc.into()),
            block_kdk,
            nonce_key,
            compress: true,
        }
    }

    /// The AES-256-GCM key of the block with this nonce.
    fn block_key(&self, nonce: &[u8]) -> LessSafeKey {
        let k = blake3::keyed_hash(&self.block_kdk, nonce);
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, k.as_bytes()).expect("a 32-byte key is valid"),
        )
    }

    /// Seal a plaintext into a block (deterministic for a given key).
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let tag = blake3::keyed_hash(&self.nonce_key, plain);
        let nonce = &tag.as_bytes()[..24];
        let compressed = (self.compress && worth_compressing(plain))
            .then(|| zstd::bulk::compress(plain, 3).ok())
            .flatten()
            .filter(|c| c.len() + 64 < plain.len());
        let (flags, body) = match &compressed {
            Some(c) => (FLAG_ZSTD, c.as_slice()),
            None => (0, plain),
        };
        let aad = [V2_AES_GCM, flags];
        let mut out = Vec::with_capacity(HEADER + body.len() + TAG);
        out.extend_from_slice(&aad);
        out.extend_from_slice(nonce);
        out.extend_from_slice(body);
        let sealed_tag = self
            .block_key(nonce)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad),
                &mut out[HEADER..],
            )
            .expect("AES-256-GCM encryption of a bounded buffer cannot fail");
        out.extend_from_slice(sealed_tag.as_ref());
        out
    }

    /// Open a block sealed with this key, decrypting in place in the
    /// block's own buffer: fails if it was altered or sealed under another
    /// key.
    pub fn open(&self, mut blob: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        if blob.len() < HEADER + TAG || !matches!(blob[0], V1_XCHACHA | V2_AES_GCM) {
            bail!("not a block sealed by this agent (bad header)");
        }
        let aad = [blob[0], blob[1]];
        let tampered = || {
            anyhow::anyhow!(
                "authentication failed: the block was altered or belongs to another key"
            )
        };
        let (head, body) = blob.split_at_mut(HEADER);
        let nonce = &head[2..];
        let len = match aad[0] {
            V1_XCHACHA => {
                let (ct, tag) = body.split_at_mut(body.len() - TAG);
                self.cipher
                    .decrypt_in_place_detached(
                        XNonce::from_slice(nonce),
                        &aad,
                        ct,
                        chacha20poly1305::Tag::from_slice(tag),
                    )
                    .map_err(|_| tampered())?;
                ct.len()
            }
            _ => self
                .block_key(nonce)
                .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), body)
                .map_err(|_| tampered())?
                .len(),
        };
        blob.truncate(HEADER + len);
        if aad[1] & FLAG_ZSTD != 0 {
            zstd::bulk::decompress(&blob[HEADER..], MAX_PLAIN).context("decompress block")
        } else {
            blob.drain(..HEADER);
            Ok(blob)
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

/// Whether a chunk is worth a full zstd pass: a sample spread over it must
/// shrink. Encrypted, compressed and media data does not, and skipping it
/// saves a pass over every such chunk.
fn worth_compressing(plain: &[u8]) -> bool {
    if plain.len() <= PROBE_SLICES * PROBE_SLICE {
        return true;
    }
    let step = plain.len() / PROBE_SLICES;
    let mut sample = Vec::with_capacity(PROBE_SLICES * PROBE_SLICE);
    for i in 0..PROBE_SLICES {
        sample.extend_from_slice(&plain[i * step..i * step + PROBE_SLICE]);
    }
    zstd::bulk::compress(&sample, 1).is_ok_and(|c| c.len() < sample.len() * 31 / 32)
}

/// The most a key file may ask the KDF for. The key file comes from the
/// server, which must not be able to make the agent allocate gigabytes or
/// spin for minutes: 1 GiB, 64 passes, 16 lanes.
const KDF_MAX_MEMORY_KIB: u32 = 1 << 20;
const KDF_MAX_ITERATIONS: u32 = 64;
const KDF_MAX_PARALLELISM: u32 = 16;

impl Kdf {
    fn derive(&self, passphrase: &str, salt: &[u8]) -> anyhow::Result<[u8; 32]> {
        if self.algorithm != "argon2id" {
            bail!(
                "key file uses {:?}; this agent knows argon2id",
                self.algorithm
            );
        }
        if self.memory_kib > KDF_MAX_MEMORY_KIB
            || self.iterations > KDF_MAX_ITERATIONS
            || self.parallelism > KDF_MAX_PARALLELISM
        {
            bail!(
                "the key file asks the KDF for {} KiB, {} passes and {} lanes; this agent \
                 accepts at most {KDF_MAX_MEMORY_KIB} KiB, {KDF_MAX_ITERATIONS} passes and \
                 {KDF_MAX_PARALLELISM} lanes (a key file from a hostile server?)",
                self.memory_kib,
                self.iterations,
                self.parallelism
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
        assert_eq!(a[0], V2_AES_GCM);
        assert_eq!(a, k.seal(&plain), "same chunk, same block (dedupe)");
        assert!(a.len() < plain.len(), "compressible data is compressed");
        assert_eq!(k.open(a.clone()).unwrap(), plain);
        for at in [0, 1, 2, HEADER, a.len() - 1] {
            let mut bad = a.clone();
            bad[at] ^= 1;
            assert!(k.open(bad).is_err(), "a flipped bit at {at} is caught");
        }
        assert!(k.open(a[..a.len() - 1].to_vec()).is_err());
        let other = Keys::generate().unwrap();
        assert_ne!(other.seal(&plain), a, "another key seals differently");
        assert!(other.open(a.clone()).is_err());
        // Two different chunks never share a nonce, nor a block key.
        let b = k.seal(&vec![8u8; 100_000]);
        assert_ne!(a[2..HEADER], b[2..HEADER]);
    }

    #[test]
    fn incompressible_chunks_are_stored_as_they_are_and_mixed_ones_compressed() {
        let k = Keys::generate().unwrap();
        let mut random = vec![0u8; 1 << 20];
        getrandom::fill(&mut random).unwrap();
        let a = k.seal(&random);
        assert_eq!(a[1] & FLAG_ZSTD, 0);
        assert_eq!(a.len(), random.len() + HEADER + TAG);
        assert_eq!(k.open(a).unwrap(), random);
        // Random but for a long text run in the middle: the sample finds it.
        let mut mixed = random.clone();
        mixed[300 << 10..800 << 10].fill(b'x');
        let b = k.seal(&mixed);
        assert_eq!(b[1] & FLAG_ZSTD, FLAG_ZSTD);
        assert!(b.len() < mixed.len() * 3 / 5);
        assert_eq!(k.open(b).unwrap(), mixed);
    }

    #[test]
    fn version_1_blocks_still_open() {
        // A block as agents before version 2 sealed it: XChaCha20-Poly1305
        // under the archive's encryption key.
        let k = Keys::generate().unwrap();
        let plain = b"an older agent's chunk".to_vec();
        let nonce = [3u8; 24];
        let aad = [V1_XCHACHA, 0];
        let ct = k
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap();
        let blob = [&aad[..], &nonce, &ct].concat();
        assert_eq!(k.open(blob.clone()).unwrap(), plain);
        let mut relabelled = blob;
        relabelled[0] = V2_AES_GCM;
        assert!(
            k.open(relabelled).is_err(),
            "the version byte is authenticated"
        );
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
    fn a_key_file_asking_for_a_huge_kdf_is_refused_before_any_allocation() {
        let k = Keys::generate().unwrap();
        let mut kf: KeyFile = serde_json::from_slice(&k.wrap("pw").unwrap()).unwrap();
        for (m, t, p) in [
            (4 << 20, 2, 1),
            (19 * 1024, 1_000_000, 1),
            (19 * 1024, 2, 255),
        ] {
            kf.kdf.memory_kib = m;
            kf.kdf.iterations = t;
            kf.kdf.parallelism = p;
            let err = Keys::unwrap(&serde_json::to_vec(&kf).unwrap(), "pw")
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("accepts at most"), "{err}");
        }
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
