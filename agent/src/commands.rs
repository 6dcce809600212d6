//! The agent's commands as a library API: what the command line runs, and
//! what the integration tests drive.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use coffer_types::wire::{BackupInfo, DeviceSecurity};
use coffer_types::BlockId;

use crate::api::Api;
use crate::backup;
use crate::crypto::Keys;
use crate::escrow;
use crate::progress::Progress;
use crate::restore::{self, RestoreOptions, RestoreSummary, VerifySummary};

/// Create the archive key if the archive has none (returns true), or check
/// `passphrase` against the existing one (returns false).
pub async fn init(api: &Api, passphrase: &str) -> anyhow::Result<bool> {
    Ok(load_keys(api, passphrase, true).await?.2)
}

/// An agent connected to its archive, with the archive key unlocked.
pub struct Agent {
    pub api: Api,
    keys: Arc<Keys>,
    key_block: BlockId,
    cache_dir: PathBuf,
    keep_deleted: backup::KeepDeleted,
}

impl Agent {
    /// Unlock the archive key with `passphrase`. The file cache lives in
    /// `cache_dir`.
    pub async fn open(api: Api, passphrase: &str, cache_dir: &Path) -> anyhow::Result<Self> {
        let (keys, key_block, _) = load_keys(&api, passphrase, false).await?;
        Ok(Self {
            api,
            keys: Arc::new(keys),
            key_block,
            cache_dir: cache_dir.to_path_buf(),
            keep_deleted: backup::KeepDeleted::Off,
        })
    }

    /// Open the archive with the escrow private key instead of the
    /// passphrase (administrator restore, with a restore token): for
    /// listing, restoring and verifying.
    pub async fn open_escrowed(
        api: Api,
        secret: &crypto_box::SecretKey,
        cache_dir: &Path,
    ) -> anyhow::Result<Self> {
        let e = api.get_escrow().await?.with_context(|| {
            format!(
                "archive {} has no escrowed key on the server: its agent escrows it at its \
                 next command once its org has security.escrow_public_key (standard security)",
                api.archive
            )
        })?;
        let sealed = hex::decode(&e.sealed).context("the escrowed key is not hex")?;
        let master = escrow::open(&sealed, secret, &api.archive)?;
        let key_block = api
            .get_ref("key")
            .await?
            .context("the archive has no key reference")?
            .block;
        Ok(Self {
            api,
            keys: Arc::new(Keys::from_master(master)),
            key_block,
            cache_dir: cache_dir.to_path_buf(),
            keep_deleted: backup::KeepDeleted::Off,
        })
    }

    /// Escrow the archive key as `security` asks: under standard security
    /// with an escrow key in force that the server's copy is not sealed to,
    /// seal it to that key and store it. Returns the key it was sealed to,
    /// if it sealed.
    pub async fn escrow(&self, security: &DeviceSecurity) -> anyhow::Result<Option<String>> {
        let Some(key) = security
            .escrow_public_key
            .as_deref()
            .filter(|_| security.archive_security == "standard")
        else {
            return Ok(None);
        };
        if security.escrowed_to.as_deref() == Some(key) {
            return Ok(None);
        }
        let sealed = escrow::seal(
            self.keys.master(),
            &self.api.archive,
            &escrow::parse_public(key)?,
        )?;
        self.api.put_escrow(key, &sealed).await?;
        Ok(Some(key.to_string()))
    }

    /// Seal new blocks compressed (the default) or not
    /// (`device_defaults.compression`).
    pub fn with_compression(mut self, on: bool) -> Self {
        if let Some(k) = Arc::get_mut(&mut self.keys) {
            k.set_compression(on);
        }
        self
    }

    /// Keep files gone from the selection in the backups that follow
    /// (`device_defaults.keep_deleted`).
    pub fn with_keep_deleted(mut self, keep: backup::KeepDeleted) -> Self {
        self.keep_deleted = keep;
        self
    }

    pub async fn backup(
        &self,
        paths: Vec<PathBuf>,
        excludes: Vec<String>,
        one_file_system: bool,
        streams: usize,
        progress: Progress,
    ) -> anyhow::Result<backup::Summary> {
        let opts = backup::Options {
            paths,
            excludes,
            one_file_system,
            streams,
            cache_file: self.cache_dir.join(format!("{}.json", self.api.archive)),
            keep_deleted: self.keep_deleted,
        };
        backup::run(&self.api, self.keys.clone(), self.key_block, opts, progress).await
    }

    pub async fn backups(&self) -> anyhow::Result<Vec<BackupInfo>> {
        self.api.backups().await
    }

    /// Restore `backup` (default: the latest); returns its id and what happened.
    pub async fn restore(
        &self,
        backup: Option<&str>,
        opts: &RestoreOptions,
        progress: &Progress,
    ) -> anyhow::Result<(String, RestoreSummary)> {
        let b = self.pick(backup).await?;
        let m = restore::manifest(&self.api, &self.keys, &b).await?;
        let s = restore::restore(&self.api, self.keys.clone(), &m, opts, progress).await?;
        Ok((b.backup.to_string(), s))
    }

    /// Check every block of `backup` (default: the latest).
    pub async fn verify(
        &self,
        backup: Option<&str>,
        streams: usize,
    ) -> anyhow::Result<(String, VerifySummary)> {
        let b = self.pick(backup).await?;
        let m = restore::manifest(&self.api, &self.keys, &b).await?;
        let s = restore::verify(&self.api, self.keys.clone(), &m, streams).await?;
        Ok((b.backup.to_string(), s))
    }

    async fn pick(&self, id: Option<&str>) -> anyhow::Result<BackupInfo> {
        match id {
            Some(id) => self.api.backup(id).await,
            None => {
                let latest = self
                    .api
                    .backups()
                    .await?
                    .pop()
                    .context("the archive has no backup yet")?;
                self.api.backup(latest.backup.as_str()).await
            }
        }
    }
}

/// The archive's keys, from the block the `key` reference names; with
/// `create`, make and store a key if there is none.
async fn load_keys(
    api: &Api,
    passphrase: &str,
    create: bool,
) -> anyhow::Result<(Keys, BlockId, bool)> {
    // Twice at most: when another machine's `init` stored the key between
    // our look and our write, the server keeps theirs, and we open it.
    for _ in 0..2 {
        match api.get_ref("key").await? {
            Some(r) => {
                let blob = api
                    .get_block(&r.block)
                    .await?
                    .context("the archive's key block is missing on the server")?;
                if BlockId::of(&blob) != r.block {
                    anyhow::bail!("the archive's key block is corrupt on the server");
                }
                return Ok((Keys::unwrap(&blob, passphrase)?, r.block, false));
            }
            None if create => {
                let keys = Keys::generate()?;
                let blob = keys.wrap(passphrase)?;
                let id = BlockId::of(&blob);
                api.put_block(&id, blob.into(), None).await?;
                if api.set_ref("key", id).await? {
                    return Ok((keys, id, true));
                }
            }
            None => anyhow::bail!(
                "archive {} has no key yet: run `coffer-agent init` first",
                api.archive
            ),
        }
    }
    anyhow::bail!("the archive's key reference changed twice while reading it; run again")
}
