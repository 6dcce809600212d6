//! The memory every buffered request body and every built answer draws from
//! (`http.body_memory_bytes`): JSON block lists, bundles, fetch answers.
//!
//! A body takes its bytes from the budget as they arrive, so a client that
//! says nothing of its size is counted by what it sent; when the budget is
//! spent the request is refused at once with `503 server_busy` and
//! `Retry-After` (waiting would keep the body's flow-control window full of
//! unread data). A block upload is not buffered (it streams to the spool in
//! pieces of 256 KiB) and takes nothing.
//!
//! A body that sends nothing for `http.body_timeout_secs` fails its
//! request, buffered or streamed ([`stall_guard`]).

use std::sync::Arc;
use std::time::Duration;

use coffer_core::CoreError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget units are KiB, so one request can hold up to 4 TiB of permits.
const UNIT: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    sem: Arc<Semaphore>,
    total: usize,
    /// How long a body may send nothing before its request fails.
    pub(crate) stall: Duration,
}

/// The budget of one connection's answers being sent (`blocks/fetch`):
/// what a client that stops reading can pin, whatever its streams.
#[derive(Debug, Clone)]
pub(crate) struct ConnBudget(pub(crate) BodyBudget);

/// What one connection's unsent answers may hold: one largest fetch answer
/// while it is built (the blocks read, and the answer).
pub(crate) const CONNECTION_ANSWER_BYTES: usize =
    2 * coffer_types::wire::BUNDLE_MAX_BYTES + (1 << 20);

/// Bytes held from the budget, given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held(Vec<OwnedSemaphorePermit>);

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Self {
            sem: Arc::new(Semaphore::new(units)),
            total: bytes,
            stall: Duration::from_secs(60),
        }
    }

    pub(crate) fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// Take `bytes` more into `held`, or refuse with `server_busy`. Permits
    /// of different budgets never merge: `held` keeps one per budget.
    pub(crate) fn take(&self, held: &mut Held, bytes: usize) -> Result<(), CoreError> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units == 0 {
            return Ok(());
        }
        match self.sem.clone().try_acquire_many_owned(units) {
            Ok(p) => {
                match held
                    .0
                    .iter_mut()
                    .find(|h| Arc::ptr_eq(h.semaphore(), &self.sem))
                {
                    Some(h) => h.merge(p),
                    None => held.0.push(p),
                }
                Ok(())
            }
            Err(_) => Err(CoreError::Busy(format!(
                "the server is holding its limit of {} MiB of request and answer bodies; \
                 retry shortly",
                self.total >> 20
            ))),
        }
    }

    /// Give `bytes` of what `held` took from this budget back now.
    pub(crate) fn give_back(&self, held: &mut Held, bytes: usize) {
        let units = bytes / UNIT;
        if let Some(h) = held
            .0
            .iter_mut()
            .find(|h| Arc::ptr_eq(h.semaphore(), &self.sem))
        {
            drop(h.split(units.min(h.num_permits())));
        }
    }

    /// Bytes in use now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        (self.total.div_ceil(UNIT) - self.sem.available_permits()) * UNIT
    }
}

/// `body`, failing with an error once it has sent nothing for `stall`.
pub(crate) fn stall_guard<S, E>(
    body: S,
    stall: Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    use futures::StreamExt;
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(stall, body.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), Some(body))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e.to_string())), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the body sent nothing for {} s", stall.as_secs()),
                )),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_taken_until_the_budget_is_spent_and_given_back_on_drop() {
        let b = BodyBudget::new(10 * UNIT);
        let mut one = Held::default();
        b.take(&mut one, 4 * UNIT).unwrap();
        b.take(&mut one, 4 * UNIT).unwrap();
        let mut two = Held::default();
        let e = b.take(&mut two, 3 * UNIT).unwrap_err();
        assert_eq!(e.code(), coffer_types::ErrorCode::ServerBusy);
        b.take(&mut two, 1).unwrap();
        assert_eq!(b.in_use(), 9 * UNIT);
        drop(one);
        assert_eq!(b.in_use(), UNIT);
        b.take(&mut two, 8 * UNIT).unwrap();
        // One hold on two budgets gives both back.
        let c = BodyBudget::new(4 * UNIT);
        let mut both = Held::default();
        drop(two);
        b.take(&mut both, 2 * UNIT).unwrap();
        c.take(&mut both, 2 * UNIT).unwrap();
        c.take(&mut both, UNIT).unwrap();
        assert_eq!((b.in_use(), c.in_use()), (2 * UNIT, 3 * UNIT));
        drop(both);
        assert_eq!((b.in_use(), c.in_use()), (0, 0));
    }
}
