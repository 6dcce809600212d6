//! Named references of an archive to one of its blocks (e.g. the agent's
//! wrapped key, so a new machine can find it).

use coffer_types::{BlockId, Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::engine::{enc, get, key, tx_dec, tx_err};
use crate::{MetaStore, Result};

/// A named reference; the block it names must stay stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRef {
    pub block: BlockId,
    pub updated_at: UnixMillis,
}

/// What setting a named reference did.
#[derive(Debug, Clone, PartialEq)]
pub enum SetRefOutcome {
    Set,
    /// The block is not stored in the archive; nothing changed.
    MissingBlock,
    /// A write-once reference names another block already; nothing changed.
    Exists(NamedRef),
}

impl MetaStore {
    /// Point the archive's reference `name` at `block`, which must be stored
    /// in the archive (checked in the same transaction). With `once`, a
    /// reference that names another block already is left as it is
    /// (compare-and-set against "none"); naming the same block again is
    /// fine.
    pub fn set_named_ref(
        &self,
        archive: &Name,
        name: &Name,
        rec: &NamedRef,
        once: bool,
    ) -> Result<SetRefOutcome> {
        let a = archive.as_str().as_bytes();
        let bk = key(&[a, rec.block.as_bytes()]);
        let nk = key(&[a, name.as_str().as_bytes()]);
        (
            &self.t.blocks,
            &self.t.named,
            &self.t.condemned,
            &self.t.epochs,
        )
            .transaction(|(blocks, named, condemned, epochs)| {
                if blocks.get(&bk)?.is_none() || condemned.get(&bk)?.is_some() {
                    return Ok(SetRefOutcome::MissingBlock);
                }
                // A new reference is a commit for the sweeps' fence.
                let mut e = crate::gc::tx_epochs(epochs, a)?;
                e.commits += 1;
                epochs.insert(a, &e.encode())?;
                if once {
                    if let Some(raw) = named.get(&nk)? {
                        let old: NamedRef = tx_dec("named reference", &raw)?;
                        if old.block != rec.block {
                            return Ok(SetRefOutcome::Exists(old));
                        }
                    }
                }
                named.insert(nk.as_slice(), enc(rec))?;
                Ok(SetRefOutcome::Set)
            })
            .map_err(tx_err("set named reference"))
    }

    pub fn named_ref(&self, archive: &Name, name: &Name) -> Result<Option<NamedRef>> {
        get(
            &self.t.named,
            &key(&[archive.as_str().as_bytes(), name.as_str().as_bytes()]),
            "named reference",
        )
    }
}
