//! Block ingest and reads: the hot path.
//!
//! `put_block` streams the body into the storage spool while hashing it,
//! refuses it as soon as it passes the size limit, publishes it only if its
//! blake3 is the id in the URL, records it in the metadata and answers only
//! once both the bytes and the record are on stable storage.

use std::ops::Range;

use bytes::Bytes;
use coffer_meta::BlockRecord;
use coffer_meta::SessionStatus;
use coffer_storage::{BlockStream, Location};
use coffer_types::wire::{MissingResponse, PutBlockResponse};
use coffer_types::{BlockId, Name};
use futures::{Stream, StreamExt};

use crate::access::DeviceAuth;
use crate::events::FoundBy;
use crate::{Coffer, CoreError, Result};

/// The result of a block read.
pub struct BlockRead {
    /// Size of the whole block.
    pub size: u64,
    /// The byte range sent, when a range was asked for.
    pub range: Option<Range<u64>>,
    pub stream: BlockStream,
}

impl std::fmt::Debug for BlockRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish()
    }
}

/// The answer to a block upload: the wire body, and whether it was created
/// (201) or already present (200).
pub type PutBlock = PutBlockResponse;

pub(crate) fn parse_block_id(s: &str) -> Result<BlockId> {
    s.parse().map_err(|e| CoreError::InvalidId(format!("{e}")))
}

/// The records of a bundle body (`id | length (u32 LE) | bytes`, at most
/// [`coffer_types::wire::BUNDLE_MAX_BLOCKS`] of them), sharing the body's
/// memory. A body that ends inside a record, or holds too many, is refused.
pub(crate) fn parse_bundle(body: Bytes) -> Result<Vec<(BlockId, Bytes)>> {
    use coffer_types::wire::{record_header, BUNDLE_MAX_BLOCKS, BUNDLE_RECORD_HEADER as H};
    let mut records = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some((id, len)) = record_header(&rest) else {
            return Err(CoreError::InvalidRequest(format!(
                "the bundle ends inside a record header ({} bytes left, a header is {H})",
                rest.len()
            )));
        };
        let len = len as usize;
        if rest.len() - H < len {
            return Err(CoreError::InvalidRequest(format!(
                "the bundle ends inside block {id}: {len} bytes announced, {} sent",
                rest.len() - H
            )));
        }
        records.push((id, rest.slice(H..H + len)));
        rest = rest.slice(H + len..);
        if records.len() > BUNDLE_MAX_BLOCKS {
            return Err(CoreError::InvalidRequest(format!(
                "a bundle holds at most {BUNDLE_MAX_BLOCKS} blocks"
            )));
        }
    }
    Ok(records)
}

impl Coffer {
    /// The archive `archive` if `device` owns it. Any other archive, existing
    /// or not, is "not found" with the same message: no existence oracle.
    pub fn archive_of(&self, device: &DeviceAuth, archive: &str) -> Result<Name> {
        if device.archive.as_str() == archive {
            Ok(device.archive.clone())
        } else {
            Err(CoreError::NotFound(format!(
                "archive {archive:?} not found"
            )))
        }
    }

    /// An open session of `archive`, for pinning.
    fn open_session_named(&self, archive: &Name, session: &str) -> Result<Name> {
        let s = self.session_record(archive, session)?;
        if s.state != SessionStatus::Open {
            return Err(crate::sessions::closed(&s));
        }
        Ok(s.id)
    }

    /// Store one block. `content_length` (when the client sent one) lets an
    /// oversized block be refused before any of it is read.
    ///
    /// On error nothing new is visible: an interrupted, oversized or
    /// mismatching body leaves no block and no record. Cancelling the future
    /// (client gone) likewise removes the spool file.
    pub async fn put_block<S>(
        &self,
        archive: &Name,
        id: &str,
        content_length: Option<u64>,
        session: Option<&str>,
        mut body: S,
    ) -> Result<PutBlockResponse>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Unpin,
    {
        let id = parse_block_id(id)?;
        let _upload = self.upload_started();
        let limit = self.limits.max_block_bytes;
        if content_length.is_some_and(|n| n > limit) {
            return Err(CoreError::BlockTooLarge { limit });
        }
        let pin = session
            .map(|s| self.open_session_named(archive, s))
            .transpose()?;

        let stored = self.meta.block(archive, &id)?;
        let heal = match &stored {
            Some(_) => self.meta.corrupt_since(archive, &id)?.is_some(),
            None => false,
        };
        if let Some(rec) = stored.filter(|_| !heal) {
            // Already stored: read and discard the body, then record the pin.
            let mut seen = 0u64;
            while let Some(chunk) = body.next().await {
                seen += chunk
                    .map_err(|e| CoreError::BodyAborted(e.to_string()))?
                    .len() as u64;
                if seen > limit {
                    return Err(CoreError::BlockTooLarge { limit });
                }
            }
            if !self
                .meta
                .touch_block(archive, &id, pin.as_ref(), self.now())?
            {
                return Err(CoreError::Busy(format!(
                    "block {id} was being removed by garbage collection as it arrived; send it again"
                )));
            }
            self.settle_pins(archive, pin.as_ref()).await?;
            self.meta.durable().await?;
            return Ok(PutBlockResponse {
                id,
                size: rec.size,
                created: false,
            });
        }

        if !heal {
            // A healing upload replaces bytes already counted.
            self.check_quota(archive, content_length.unwrap_or(0))?;
        }
        let mut writer = self.storage.begin(archive.as_str(), &id, content_length)?;
        if heal {
            // The stored copy was found corrupt: this upload replaces it.
            writer = writer.replacing();
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| CoreError::BodyAborted(e.to_string()))?;
            if writer.len() + chunk.len() as u64 > limit {
                return Err(CoreError::BlockTooLarge { limit });
            }
            writer.write(chunk).await?;
        }
        let size = writer.len();
        let actual = writer.finish().await?;
        if actual != id {
            return Err(CoreError::DigestMismatch {
                expected: id,
                actual,
            });
        }
        if !heal && content_length.is_none() {
            self.check_quota(archive, size)?;
        }
        // Not where a sweep is about to delete: the insert checks the
        // journal too, but only after the bytes are in place, and a sweep
        // that deleted them and cleared its entry in between would leave
        // the record without its bytes (a block stored as a file or an
        // object has one place, named by its id).
        if self.meta.being_destroyed(archive, &id)? {
            return Err(coffer_meta::MetaError::BeingDestroyed(id).into());
        }
        let published = writer.publish(id).await?;
        let rec = BlockRecord {
            size,
            stored_at: self.now(),
            location: published.location.encode(),
        };
        if heal {
            self.meta.heal_block(archive, &id, &rec, pin.as_ref())?;
            self.settle_pins(archive, pin.as_ref()).await?;
            self.meta.durable().await?;
            tracing::info!(archive = %archive, block = %id, "a block found corrupt was healed by a new upload");
            self.publish_for_archive(archive, |device| crate::events::EventKind::BlockHealed {
                device,
                archive: archive.clone(),
                block: id,
            });
            return Ok(PutBlockResponse {
                id,
                size,
                created: true,
            });
        }
        let created = self.meta.insert_block(archive, &id, &rec, pin.as_ref())?;
        if created {
            // The block is stored: a failure to count it is logged, never
            // the upload's failure (the counts are read again at start).
            if let Err(e) = self.count_stored(archive, size) {
                tracing::warn!(archive = %archive, block = %id, error = %e, "could not count a stored block against its quotas");
            }
            self.health_touched(archive);
        }
        self.settle_pins(archive, pin.as_ref()).await?;
        self.meta.durable().await?;
        Ok(PutBlockResponse { id, size, created })
    }

    /// Several blocks in one request (records `id | length | bytes`, see
    /// [`coffer_types::wire::BUNDLE_MAX_BYTES`]). Each block is checked,
    /// stored, pinned and made durable exactly as its own PUT would be, all
    /// of them at once, so the answer costs one round of commits instead of
    /// one per block. A malformed bundle stores nothing; a block whose bytes
    /// do not hash to its id fails the request and names the block (blocks
    /// stored before it stay stored, unacknowledged, like any upload cut
    /// short).
    pub async fn put_bundle(
        &self,
        archive: &Name,
        session: Option<&str>,
        body: Bytes,
    ) -> Result<Vec<PutBlockResponse>> {
        let records = parse_bundle(body)?;
        let puts = records.into_iter().map(|(id, data)| async move {
            let len = data.len() as u64;
            self.put_block(
                archive,
                &id.to_string(),
                Some(len),
                session,
                futures::stream::iter([Ok::<_, std::io::Error>(data)]),
            )
            .await
        });
        futures::future::join_all(puts).await.into_iter().collect()
    }

    /// Of `ids`, those the archive does not hold, in the order given. With a
    /// session, the ones it holds are pinned to that session.
    pub async fn missing_blocks(
        &self,
        archive: &Name,
        ids: Vec<BlockId>,
        session: Option<&Name>,
    ) -> Result<MissingResponse> {
        if ids.len() > self.limits.max_missing_ids {
            return Err(CoreError::BodyTooLarge {
                limit: self.limits.max_missing_ids as u64,
            });
        }
        let pin = session
            .map(|s| self.open_session_named(archive, s.as_str()))
            .transpose()?;
        let archive_name = archive.clone();
        let pinned = pin.clone();
        let missing = self
            .meta_blocking("check blocks", move |m| {
                Ok(m.missing(&archive_name, &ids, pinned.as_ref())?)
            })
            .await?;
        if pin.is_some() {
            self.settle_pins(archive, pin.as_ref()).await?;
            self.meta.durable().await?;
        }
        Ok(MissingResponse { missing })
    }

    /// Whether `bytes` are block `id`; if not, record it as corrupt.
    fn verified(&self, archive: &Name, id: &BlockId, bytes: &[u8]) -> bool {
        if BlockId::of(bytes) == *id {
            return true;
        }
        self.found_corrupt(archive, id);
        false
    }

    fn found_corrupt(&self, archive: &Name, id: &BlockId) {
        match self
            .meta
            .mark_damaged(archive, id, coffer_meta::Damage::Corrupt, self.now())
        {
            Ok(true) => {
                tracing::error!(
                    archive = %archive,
                    block = %id,
                    "a stored block does not match its id: recorded as corrupt; the device's next \
                     backup uploads it again"
                );
                self.publish_damage(archive, id, coffer_meta::Damage::Corrupt, FoundBy::Read);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(archive = %archive, block = %id, error = %e, "could not record a corrupt block")
            }
        }
    }

    /// `stream` (a whole block), checked against `id` as it goes: each
    /// piece is sent only once the next has been read, and the last only
    /// after the blake3 matched. On a mismatch the stream ends with an error
    /// (the server resets the HTTP/2 stream, so the client never takes the
    /// bytes for a whole block) and the block is recorded as corrupt.
    fn verifying(&self, archive: &Name, id: BlockId, stream: BlockStream) -> BlockStream {
        struct State {
            inner: BlockStream,
            hasher: blake3::Hasher,
            held: Option<Bytes>,
            done: bool,
        }
        let this = self.clone();
        let archive = archive.clone();
        let state = State {
            inner: stream,
            hasher: blake3::Hasher::new(),
            held: None,
            done: false,
        };
        futures::stream::unfold(state, move |mut st| {
            let (this, archive) = (this.clone(), archive.clone());
            async move {
                if st.done {
                    return None;
                }
                loop {
                    match st.inner.next().await {
                        Some(Ok(b)) => {
                            st.hasher.update(&b);
                            if let Some(prev) = st.held.replace(b) {
                                return Some((Ok(prev), st));
                            }
                        }
                        Some(Err(e)) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                        None => {
                            st.done = true;
                            let actual = BlockId::from_bytes(*st.hasher.finalize().as_bytes());
                            if actual == id {
                                return st.held.take().map(|b| (Ok(b), st));
                            }
                            this.found_corrupt(&archive, &id);
                            let e = coffer_storage::StorageError::Io {
                                op: "verify block",
                                source: std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    format!("the stored copy of block {id} does not match its id"),
                                ),
                            };
                            return Some((Err(e), st));
                        }
                    }
                }
            }
        })
        .boxed()
    }

    /// After pins were written for `session`: if the session was committed
    /// meanwhile (the commit released its pins between the check that it
    /// was open and these writes), release them again, so no pin outlives
    /// its commit. (An aborted session's pins stay until the collector
    /// drops them after the grace.)
    pub(crate) async fn settle_pins(&self, archive: &Name, session: Option<&Name>) -> Result<()> {
        let Some(s) = session else { return Ok(()) };
        let committed = self
            .meta
            .session(archive, s)?
            .is_some_and(|r| r.state == SessionStatus::Committed);
        if committed {
            let (archive, s) = (archive.clone(), s.clone());
            let n = self
                .meta_blocking("release pins", move |m| Ok(m.release_pins(&archive, &s)?))
                .await?;
            tracing::debug!(
                released = n,
                "pins written as their session closed were released"
            );
        }
        Ok(())
    }

    /// Size of a stored block.
    pub fn block_size(&self, archive: &Name, id: &str) -> Result<u64> {
        let id = parse_block_id(id)?;
        Ok(self.block_record(archive, &id)?.size)
    }

    fn block_record(&self, archive: &Name, id: &BlockId) -> Result<BlockRecord> {
        self.meta
            .block(archive, id)?
            .ok_or_else(|| CoreError::NotFound(format!("block {id} is not stored in this archive")))
    }

    /// Whole blocks in one answer, for restoring many small files: records
    /// `id | length | bytes` in the order asked, as a bundle upload sends
    /// them; a block the archive does not hold (or whose bytes are gone from
    /// the storage) has the length [`coffer_types::wire::FETCH_ABSENT`] and
    /// no bytes, so one lost block fails only the file it belongs to.
    ///
    /// `reserve` is told how many bytes the answer will hold in memory
    /// (the blocks read, and the answer built from them) before any is read,
    /// and may refuse; what it returns comes back with the answer.
    pub async fn read_blocks<R>(
        &self,
        archive: &Name,
        ids: &[BlockId],
        reserve: impl FnOnce(u64) -> Result<R>,
    ) -> Result<(Bytes, R)> {
        use coffer_types::wire::{
            push_record, BUNDLE_MAX_BLOCKS, BUNDLE_MAX_BYTES, BUNDLE_RECORD_HEADER as H,
        };
        if ids.len() > BUNDLE_MAX_BLOCKS {
            return Err(CoreError::InvalidRequest(format!(
                "{} ids asked for; one fetch answers at most {BUNDLE_MAX_BLOCKS} blocks",
                ids.len()
            )));
        }
        let mut found = Vec::with_capacity(ids.len());
        let mut total = 0u64;
        for id in ids {
            let at = match self.meta.block(archive, id)? {
                None => None,
                Some(rec) => {
                    total += rec.size;
                    let at = Location::decode(&rec.location).ok_or_else(|| {
                        CoreError::Internal(format!("block {id} has an unreadable location record"))
                    })?;
                    Some((rec.size, at))
                }
            };
            found.push(at);
        }
        if total > BUNDLE_MAX_BYTES as u64 {
            return Err(CoreError::InvalidRequest(format!(
                "the {} blocks asked for hold {total} bytes; one fetch answers at most \
                 {BUNDLE_MAX_BYTES}: ask for fewer",
                ids.len()
            )));
        }
        let held = reserve(2 * total + (ids.len() * H) as u64)?;
        // Absent blocks and empty ones need no read.
        let wanted: Vec<(BlockId, Location)> = ids
            .iter()
            .zip(&found)
            .filter_map(|(id, f)| f.filter(|(size, _)| *size > 0).map(|(_, at)| (*id, at)))
            .collect();
        let mut read = self
            .storage
            .read_many(archive.as_str(), wanted)
            .await?
            .into_iter();
        let mut blocks = Vec::with_capacity(ids.len());
        for (id, f) in ids.iter().zip(&found) {
            blocks.push(match f {
                None => None,
                Some((0, _)) => Some(Bytes::new()),
                // A copy that does not match its id is answered as absent
                // (the file it belongs to fails, not the others).
                Some(_) => read
                    .next()
                    .flatten()
                    .filter(|b| self.verified(archive, id, b)),
            });
        }
        let mut out = Vec::with_capacity(ids.len() * H + total as usize);
        for (id, b) in ids.iter().zip(blocks) {
            push_record(&mut out, id, b.as_deref());
        }
        Ok((out.into(), held))
    }

    /// Read a block, or the inclusive byte range `first..=last` of it
    /// (`last` = `None`: to the end; HTTP `Range: bytes=first-last`).
    pub async fn read_block(
        &self,
        archive: &Name,
        id: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<BlockRead> {
        let id = parse_block_id(id)?;
        let rec = self.block_record(archive, &id)?;
        let size = rec.size;
        let location = Location::decode(&rec.location).ok_or_else(|| {
            CoreError::Internal(format!("block {id} has an unreadable location record"))
        })?;
        let range = match range {
            None => None,
            Some((first, last)) => {
                let last = last.unwrap_or(u64::MAX).min(size.saturating_sub(1));
                if first >= size || first > last {
                    return Err(CoreError::RangeNotSatisfiable { size });
                }
                Some(first..last + 1)
            }
        };
        let stream = if size == 0 {
            futures::stream::empty().boxed()
        } else {
            let stream = match self
                .storage
                .get(archive.as_str(), &id, location, range.clone())
                .await
            {
                Ok(s) => s,
                // Not a silent 404: the block is recorded as damaged (the
                // device is asked for it again) and the answer says so.
                Err(e @ coffer_storage::StorageError::Corrupt { .. }) => {
                    self.found_corrupt(archive, &id);
                    return Err(CoreError::CorruptBlock(format!(
                        "{e}; it is recorded, and its device uploads it again at its next backup"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            match range {
                Some(_) => stream,
                None => self.verifying(archive, id, stream),
            }
        };
        Ok(BlockRead {
            size,
            range,
            stream,
        })
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use coffer_types::wire::push_record;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: an answer, never a panic; what parses re-encodes to
        /// the same body.
        #[test]
        fn fuzz_bundle_parser_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(records) = parse_bundle(Bytes::from(body.clone())) {
                let mut again = Vec::new();
                for (id, b) in &records {
                    push_record(&mut again, id, Some(b));
                }
                prop_assert_eq!(again, body);
            }
        }

        /// Bundles as agents build them parse back record for record.
        #[test]
        fn fuzz_bundle_parser_reads_what_agents_send(
            blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut body = Vec::new();
            for b in &blocks {
                push_record(&mut body, &BlockId::of(b), Some(b));
            }
            let records = parse_bundle(Bytes::from(body.clone())).unwrap();
            prop_assert_eq!(records.len(), blocks.len());
            for ((id, got), want) in records.iter().zip(&blocks) {
                prop_assert_eq!(*id, BlockId::of(want));
                prop_assert_eq!(&got[..], &want[..]);
            }
            // Cut anywhere inside: refused, never a partial success.
            if !body.is_empty() {
                let at = cut.index(body.len());
                let short = parse_bundle(Bytes::from(body[..at].to_vec()));
                let whole_records = {
                    let mut n = 0;
                    let mut ends = vec![0usize];
                    for b in &blocks {
                        n += 36 + b.len();
                        ends.push(n);
                    }
                    ends.contains(&at)
                };
                prop_assert_eq!(short.is_ok(), whole_records);
            }
        }
    }
}
