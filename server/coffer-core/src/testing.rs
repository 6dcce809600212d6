//! A core for tests: memory block storage, a metadata store in a temporary
//! directory, and a [`ManualClock`], so time rules are tested by moving the
//! clock, not by sleeping or starting the binary. Built for the core's own
//! tests and, with the `testing` feature, for other crates' tests and
//! benches.

use std::sync::Arc;

use coffer_meta::MetaStore;
use coffer_storage::{Backend, BlockStore, StorageConfig};
use coffer_types::wire::{CreateAccount, CreateToken, DeviceToken, EnrollDevice};
use coffer_types::{Name, Role};

use crate::access::Principal;
use crate::clock::ManualClock;
use crate::{Coffer, Limits};

/// The time a fixture's clock starts at: 2026-01-01T00:00:00Z.
pub const START: u64 = 1_767_225_600_000;

/// A core over throwaway storage. Dropping it removes the directory.
pub struct Fixture {
    pub core: Coffer,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("dir", &self.dir.path())
            .finish()
    }
}

pub fn name(s: &str) -> Name {
    Name::new(s).expect("a valid name")
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_backend(Backend::Memory)
    }

    /// A core over blocks on local disk (packs for small blocks) in the
    /// temporary directory.
    pub fn on_disk() -> Self {
        Self::with_backend(Backend::Disk)
    }

    fn with_backend(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = ManualClock::new(START);
        let meta =
            Arc::new(MetaStore::open(&dir.path().join("meta"), START).expect("open metadata"));
        let storage = BlockStore::open(
            &StorageConfig {
                backend,
                path: (backend == Backend::Disk).then(|| dir.path().join("blocks")),
                ..Default::default()
            },
            dir.path(),
        )
        .expect("open block storage");
        let core = Coffer::new(meta, storage, Arc::new(clock.clone()), Limits::default())
            .expect("start the core");
        Self { core, clock, dir }
    }

    /// A new core over the same metadata and storage, as after a restart
    /// (what a start does runs again).
    pub fn restarted(&self) -> Coffer {
        Coffer::new(
            self.core.meta.clone(),
            self.core.storage.clone(),
            Arc::new(self.clock.clone()),
            Limits::default(),
        )
        .expect("restart the core")
    }

    /// The unscoped admin the server itself acts as.
    pub fn admin(&self) -> Principal {
        Principal::system()
    }

    /// A principal of `role` (scoped to `org`), as if authenticated with a
    /// token of an account named `account`.
    pub fn principal(&self, account: &str, role: Role, org: Option<&str>) -> Principal {
        Principal::new(name(account), role, org.map(name), None)
    }

    /// Create an account and a token for it through the core, as the API
    /// does; returns the token.
    pub async fn account_token(
        &self,
        account: &str,
        role: Role,
        org: Option<&str>,
        expires: &str,
    ) -> String {
        let admin = self.admin();
        self.core
            .create_account(
                &admin,
                CreateAccount {
                    name: name(account),
                    role,
                    org: org.map(name),
                    password: None,
                },
            )
            .await
            .expect("create account");
        self.core
            .create_token(
                &admin,
                CreateToken {
                    account: name(account),
                    expires: Some(expires.to_string()),
                },
            )
            .await
            .expect("create token")
            .token
    }

    /// Create `org` (under `parent`) as the admin.
    pub async fn org(&self, org: &str, parent: Option<&str>) {
        self.core
            .create_org(&self.admin(), name(org), parent.map(name))
            .await
            .expect("create org");
    }

    /// Enroll a device (adding its user if needed) as the admin.
    pub async fn device(&self, org: &str, user: &str, device: &str) -> DeviceToken {
        let admin = self.admin();
        let _ = self.core.add_user(&admin, name(org), name(user)).await;
        self.core
            .enroll_device(
                &admin,
                EnrollDevice {
                    org: name(org),
                    user: name(user),
                    name: device.to_string(),
                    os: None,
                },
            )
            .await
            .expect("enroll device")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
