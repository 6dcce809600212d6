//! Key escrow, the agent's side (seed 000's administrator restore).
//!
//! - `coffer-agent escrow keygen --out DIR` makes an X25519 key pair:
//!   `DIR/escrow.key` (mode 0600, the private half: it never goes to the
//!   server) and `DIR/escrow.pub` (one line, `coffer-escrow-v1:` and 64 hex
//!   digits), which the operator sets as `security.escrow_public_key`.
//! - Under standard security with an escrow key in force, the agent seals
//!   its archive key to that key (libsodium's sealed box: an ephemeral
//!   X25519 key, XSalsa20-Poly1305) and stores the box on the server, which
//!   cannot open it. The sealed text names the archive, so a box moved to
//!   another archive is refused.
//! - `coffer-agent restore --escrow-key DIR/escrow.key` with a restore
//!   token opens the box and restores without the passphrase.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use coffer_types::wire::ESCROW_PUBLIC_KEY_PREFIX;
use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

/// The private key file's line.
const SECRET_PREFIX: &str = "coffer-escrow-secret-v1:";
const KEY_FILE: &str = "escrow.key";
const PUB_FILE: &str = "escrow.pub";

/// What is sealed: the archive key, and the archive it opens.
#[derive(Serialize, Deserialize)]
struct Sealed {
    version: u32,
    archive: String,
    key: String,
}

/// The one-line text of a public key.
pub fn public_text(pk: &PublicKey) -> String {
    format!("{ESCROW_PUBLIC_KEY_PREFIX}{}", hex::encode(pk.as_bytes()))
}

/// A public key from its one-line text.
pub fn parse_public(text: &str) -> anyhow::Result<PublicKey> {
    let bytes = text
        .trim()
        .strip_prefix(ESCROW_PUBLIC_KEY_PREFIX)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "{text:?} is not an escrow public key ({ESCROW_PUBLIC_KEY_PREFIX}64 hex digits)"
            )
        })?;
    Ok(PublicKey::from_bytes(bytes))
}

/// Write a new key pair into `dir` (made if absent); never overwrites an
/// existing key. Returns the two files and the public key's line.
pub fn keygen(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let (key_path, pub_path) = (dir.join(KEY_FILE), dir.join(PUB_FILE));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!(
                "{} exists: an escrow key is never overwritten (archives may be sealed to it); \
                 choose another --out",
                p.display()
            );
        }
    }
    let secret = SecretKey::generate(&mut OsRng);
    let line = public_text(&secret.public_key());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("create {}", key_path.display()))?;
    writeln!(
        f,
        "# Coffer escrow private key. Keep it offline: it opens every archive key sealed to\n\
         # {line}\n{SECRET_PREFIX}{}",
        hex::encode(secret.to_bytes())
    )?;
    f.sync_all()?;
    std::fs::write(&pub_path, format!("{line}\n"))
        .with_context(|| format!("write {}", pub_path.display()))?;
    Ok((key_path, pub_path, line))
}

/// The private key in `path` (as `keygen` wrote it).
pub fn load_secret(path: &Path) -> anyhow::Result<SecretKey> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the escrow key {}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        eprintln!(
            "warning: {} can be read by other users (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let bytes = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(SECRET_PREFIX))
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "{} is not an escrow private key (no {SECRET_PREFIX} line); give the \
                 escrow.key that `coffer-agent escrow keygen` wrote",
                path.display()
            )
        })?;
    Ok(SecretKey::from_bytes(bytes))
}

/// `master`, the key of `archive`, sealed to `pk`.
pub fn seal(master: &[u8; 32], archive: &str, pk: &PublicKey) -> anyhow::Result<Vec<u8>> {
    let text = serde_json::to_vec(&Sealed {
        version: 1,
        archive: archive.to_string(),
        key: hex::encode(master),
    })?;
    pk.seal(&mut OsRng, &text)
        .map_err(|_| anyhow::anyhow!("seal the archive key to the escrow key"))
}

/// Open a sealed archive key with `secret`; it must be `archive`'s.
pub fn open(sealed: &[u8], secret: &SecretKey, archive: &str) -> anyhow::Result<[u8; 32]> {
    let text = secret.unseal(sealed).map_err(|_| {
        anyhow::anyhow!(
            "the escrow key does not open archive {archive}'s escrowed key: it is sealed to \
             another escrow key"
        )
    })?;
    let s: Sealed = serde_json::from_slice(&text).context("the escrowed key is malformed")?;
    if s.version != 1 {
        bail!(
            "escrowed key version {} is newer than this agent",
            s.version
        );
    }
    if s.archive != archive {
        bail!(
            "the escrowed key is archive {}'s, not {archive}'s: refusing it",
            s.archive
        );
    }
    hex::decode(&s.key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .context("the escrowed key holds a key of the wrong length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pair_seals_and_opens_and_is_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("escrow");
        let (key, public, line) = keygen(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let pub_text = std::fs::read_to_string(&public).unwrap();
        assert_eq!(pub_text.lines().count(), 1);
        assert_eq!(pub_text.trim(), line);
        assert!(line.starts_with(ESCROW_PUBLIC_KEY_PREFIX) && line.len() == 17 + 64);
        let e = keygen(&dir).unwrap_err().to_string();
        assert!(e.contains("never overwritten"), "{e}");

        let pk = parse_public(&line).unwrap();
        let secret = load_secret(&key).unwrap();
        let master = [7u8; 32];
        let sealed = seal(&master, "ar_1", &pk).unwrap();
        assert_eq!(open(&sealed, &secret, "ar_1").unwrap(), master);
        // Each sealing is fresh (ephemeral key), and the archive is bound.
        assert_ne!(seal(&master, "ar_1", &pk).unwrap(), sealed);
        let e = open(&sealed, &secret, "ar_2").unwrap_err().to_string();
        assert!(e.contains("archive ar_1's, not ar_2's"), "{e}");
        // Another escrow key does not open it; a flipped bit is caught.
        let other = SecretKey::generate(&mut OsRng);
        assert!(open(&sealed, &other, "ar_1").is_err());
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert!(open(&bad, &secret, "ar_1").is_err());
        assert!(parse_public("coffer-escrow-v1:abcd").is_err());
    }
}
