//! The one gate that destroys data (DESIGN §3.6). Every path that deletes
//! something stored calls [`Coffer::destroy`], which asks
//! [`Coffer::may_destroy`] at the moment of destruction and writes the
//! destruction (or its refusal) to the audit log in the same transaction.
//!
//! Today the one thing destroyed is an escrowed archive key, when its org
//! comes under enhanced archive security. Legal holds do not keep an
//! escrowed key: a hold preserves backups and their blocks, and enhanced
//! security is the operator's decision that no one but the passphrase
//! holder can open the archive. Retention, GC and removals join here with
//! the hold checks that bind them.

use coffer_types::Name;

use crate::access::Principal;
use crate::{Coffer, Result};

/// Something the gate may destroy.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doomed<'a> {
    /// An archive's escrowed key (the sealed box, in the metadata).
    EscrowKey { archive: &'a Name },
}

impl Doomed<'_> {
    fn target(&self) -> String {
        match self {
            Doomed::EscrowKey { archive } => format!("archive:{archive}"),
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Doomed::EscrowKey { .. } => "escrow.destroy",
        }
    }
}

impl Coffer {
    /// Destroy `what` as `p`, for `reason`: true when something was
    /// destroyed (and its audit entry written with it, durable at the
    /// caller's next `durable()`). The checks that may refuse a
    /// destruction (legal holds, retention) come here, before the match.
    pub(crate) fn destroy(&self, p: &Principal, what: Doomed<'_>, reason: &str) -> Result<bool> {
        let draft = self.draft(p, what.action(), what.target(), [("reason", reason.into())]);
        let done = match what {
            Doomed::EscrowKey { archive } => self.meta.delete_escrow(archive, &draft)?,
        };
        if done {
            tracing::info!(target = %what.target(), reason, by = %p.account(), "destroyed: {}", what.action());
        }
        Ok(done)
    }
}
