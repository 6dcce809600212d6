//! The adversarial suite of the destruction gate (research Part C): every
//! destructive path tried against held data, by every role, by a hostile
//! retention plugin, under a clock moved around, and the collector racing
//! backups. Each test moves the manual clock instead of sleeping.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use coffer_types::wire::{
    BackupInfo, CommitRequest, CreateHoldPolicy, CreateMatter, CustodianRequest, SetOrgSettings,
};
use coffer_types::{BlockId, ErrorCode, Name, Role};
use futures::future::BoxFuture;

use crate::access::{DeviceAuth, Principal};
use crate::destroy::{Doomed, GateCtx, Origin, Verdict};
use crate::plugins::{Inventory, PlanTarget, PluginAdmin};
use crate::testing::{name, Fixture};
use crate::{Coffer, CoreError, HoldSettings};

pub(crate) const SEC: u64 = 1000;
pub(crate) const DAY: u64 = 86_400 * SEC;
pub(crate) const YEAR: u64 = 365 * DAY;

pub(crate) fn code<T: std::fmt::Debug>(r: crate::Result<T>) -> ErrorCode {
    r.expect_err("an error").code()
}

pub(crate) async fn dev(f: &Fixture, org: &str, user: &str, device: &str) -> DeviceAuth {
    if f.core.meta.org(&name(org)).unwrap().is_none() {
        f.org(org, None).await;
    }
    let t = f.device(org, user, device).await;
    f.core.authenticate_device(&t.token).unwrap()
}

pub(crate) async fn put(
    f: &Fixture,
    a: &DeviceAuth,
    session: Option<&Name>,
    data: &[u8],
) -> crate::Result<BlockId> {
    let body = bytes::Bytes::copy_from_slice(data);
    let id = BlockId::of(&body);
    f.core
        .put_block(
            &a.archive,
            &id.to_hex(),
            Some(body.len() as u64),
            session.map(|s| s.as_str()),
            futures::stream::iter([Ok::<_, std::io::Error>(body)]),
        )
        .await?;
    Ok(id)
}

/// A complete backup of `blocks` (the first is the manifest).
pub(crate) async fn backup(f: &Fixture, a: &DeviceAuth, blocks: &[&[u8]]) -> BackupInfo {
    let s = f.core.open_session(a, &a.archive, None).await.unwrap();
    let mut ids = Vec::new();
    for b in blocks {
        ids.push(put(f, a, Some(&s.session), b).await.unwrap());
    }
    let (info, _) = f
        .core
        .commit(
            &a.archive,
            s.session.as_str(),
            CommitRequest {
                manifest: ids[0],
                blocks: ids[1..].to_vec(),
                stats: coffer_types::wire::BackupStats {
                    files: 1,
                    bytes: 1,
                    percent: 100.0,
                },
            },
        )
        .await
        .unwrap();
    info
}

/// `[legal_hold]`: approvals a release needs, and the quarantine (s).
pub(crate) fn release_rule(f: &Fixture, approvals: u8, quarantine_secs: u64) {
    f.core.set_hold_settings(HoldSettings {
        release_approvals: approvals,
        release_quarantine: std::time::Duration::from_secs(quarantine_secs),
    });
}

/// Commit `session` with `manifest` alone.
pub(crate) async fn commit_manifest(
    f: &Fixture,
    a: &DeviceAuth,
    session: &Name,
    manifest: BlockId,
) -> crate::Result<BackupInfo> {
    f.core
        .commit(
            &a.archive,
            session.as_str(),
            CommitRequest {
                manifest,
                blocks: vec![],
                stats: Default::default(),
            },
        )
        .await
        .map(|(b, _)| b)
}

pub(crate) fn lha(name_: &str) -> Principal {
    Principal::new(name(name_), Role::LegalHoldAdmin, None, None)
}

pub(crate) async fn set(f: &Fixture, org: &str, group: &str, values: &[(&str, &str)]) {
    f.core
        .set_org_settings(
            &f.admin(),
            &name(org),
            &SetOrgSettings {
                group: group.into(),
                values: values
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                    .collect(),
                mode: None,
            },
        )
        .await
        .unwrap();
}

/// Short tiers: keep all 1 day, nothing daily, weekly or monthly, min age
/// 1 day: every backup older than a day but the newest expires.
pub(crate) async fn short_tiers(f: &Fixture, org: &str) {
    set(
        f,
        org,
        "retention",
        &[
            ("keep_all", "1d"),
            ("daily", "1d"),
            ("weekly", "1d"),
            ("monthly", "1d"),
            ("min_age", "1d"),
        ],
    )
    .await;
}

pub(crate) async fn policy(f: &Fixture, p: &Principal, n: &str) {
    let _ = f
        .core
        .create_hold_policy(
            p,
            CreateHoldPolicy {
                name: n.into(),
                keep: None,
                retention: Default::default(),
                keep_deleted: None,
            },
        )
        .await;
}

pub(crate) async fn matter(f: &Fixture, p: &Principal, n: &str) {
    policy(f, p, "keep-all").await;
    f.core
        .create_matter(
            p,
            CreateMatter {
                name: n.into(),
                policy: "keep-all".into(),
                description: "a case".into(),
            },
        )
        .await
        .unwrap();
}

pub(crate) fn req(matter: &str, user: &str, reason: &str) -> CustodianRequest {
    CustodianRequest {
        matter: matter.into(),
        user: user.into(),
        org: None,
        reason: reason.into(),
    }
}

pub(crate) async fn hold(f: &Fixture, m: &str, user: &str) {
    let p = lha("lena");
    if f.core.meta.matter(&name(m)).unwrap().is_none() {
        matter(f, &p, m).await;
    }
    f.core
        .add_custodian(&p, req(m, user, "litigation"))
        .await
        .unwrap();
}

pub(crate) fn backups_of(f: &Fixture, a: &DeviceAuth) -> Vec<Name> {
    f.core
        .meta
        .backups(&a.archive)
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect()
}

/// Ten daily backups, then the clock a month on: the tiers expire all but
/// the newest.
pub(crate) async fn history(f: &Fixture, a: &DeviceAuth, n: usize) -> Vec<BackupInfo> {
    let mut out = Vec::new();
    for i in 0..n {
        let data = format!("block {i} of {}", a.archive);
        out.push(backup(f, a, &[data.as_bytes(), b"shared block"]).await);
        f.clock.advance(DAY);
    }
    f.clock.advance(30 * DAY);
    out
}

fn audit(f: &Fixture) -> Vec<coffer_meta::AuditRecord> {
    f.core
        .meta
        .audit_list(&coffer_meta::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .unwrap()
}

fn audited(f: &Fixture, action: &str, outcome: &str) -> Vec<coffer_meta::AuditRecord> {
    audit(f)
        .into_iter()
        .filter(|e| e.action == action && e.outcome == outcome)
        .collect()
}

// ---------------------------------------------------------------- C2 holds

#[tokio::test]
async fn only_legal_hold_admins_and_admins_manage_holds() {
    let f = Fixture::new();
    dev(&f, "acme", "ann", "laptop").await;
    for (who, role, org) in [
        ("olga", Role::OrgAdmin, Some("acme")),
        ("rita", Role::ReadOnly, None),
    ] {
        let p = f.principal(who, role, org);
        let r = f
            .core
            .create_hold_policy(
                &p,
                CreateHoldPolicy {
                    name: "p".into(),
                    keep: None,
                    retention: Default::default(),
                    keep_deleted: None,
                },
            )
            .await;
        assert_eq!(code(r), ErrorCode::Forbidden, "{who}");
        assert_eq!(
            code(f.core.add_custodian(&p, req("m", "ann", "")).await),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(f.core.release_custodian(&p, req("m", "ann", "why")).await),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(f.core.close_matter(&p, "m", "why").await),
            ErrorCode::Forbidden
        );
    }
    // Their refusals are in the audit log.
    assert!(audited(&f, "hold.policy.create", "refused").len() >= 2);
    assert!(audited(&f, "hold.release", "refused").len() >= 2);
    matter(&f, &lha("lena"), "m").await;
    matter(&f, &f.admin(), "m2").await;
    f.core
        .add_custodian(&lha("lena"), req("m", "ann", ""))
        .await
        .unwrap();
    // Read-only does not even read holds; org-admins do not either.
    assert_eq!(
        code(
            f.core
                .matters(&f.principal("rita", Role::ReadOnly, None))
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            f.core
                .custodians(&f.principal("olga", Role::OrgAdmin, Some("acme")), None)
                .await
        ),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn matters_policies_and_custodians_refuse_bad_requests_clearly() {
    let f = Fixture::new();
    let p = lha("lena");
    dev(&f, "acme", "ann", "laptop").await;
    dev(&f, "beta", "ann", "desktop").await;
    let r = f
        .core
        .create_matter(
            &p,
            CreateMatter {
                name: "m".into(),
                policy: "nope".into(),
                description: String::new(),
            },
        )
        .await;
    assert_eq!(code(r), ErrorCode::NotFound);
    matter(&f, &p, "m").await;
    let dup = f
        .core
        .create_matter(
            &p,
            CreateMatter {
                name: "m".into(),
                policy: "keep-all".into(),
                description: String::new(),
            },
        )
        .await;
    assert_eq!(code(dup), ErrorCode::AlreadyExists);
    // `ann` exists in two orgs: name the org.
    let e = f
        .core
        .add_custodian(&p, req("m", "ann", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.to_string().contains("acme, beta"), "{e}");
    assert_eq!(
        code(f.core.add_custodian(&p, req("m", "zed", "")).await),
        ErrorCode::NotFound
    );
    let mut r = req("m", "ann", "");
    r.org = Some("acme".into());
    f.core.add_custodian(&p, r.clone()).await.unwrap();
    assert_eq!(
        code(f.core.add_custodian(&p, r.clone()).await),
        ErrorCode::AlreadyExists
    );
    // A release needs a reason.
    let e = f.core.release_custodian(&p, r.clone()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.to_string().contains("reason"), "{e}");
    // Tier policies: only known tiers, in order.
    let bad = f
        .core
        .create_hold_policy(
            &p,
            CreateHoldPolicy {
                name: "t".into(),
                keep: Some("tiers".into()),
                retention: [
                    ("daily".to_string(), "1d".to_string()),
                    ("weekly".to_string(), "1h".to_string()),
                ]
                .into(),
                keep_deleted: None,
            },
        )
        .await;
    assert_eq!(code(bad), ErrorCode::InvalidRequest);
    let unknown = f
        .core
        .create_hold_policy(
            &p,
            CreateHoldPolicy {
                name: "t".into(),
                keep: Some("tiers".into()),
                retention: [("hourly".to_string(), "1d".to_string())].into(),
                keep_deleted: None,
            },
        )
        .await;
    assert_eq!(code(unknown), ErrorCode::InvalidRequest);
    // Closing needs a reason; a closed matter takes no custodian.
    assert_eq!(
        code(f.core.close_matter(&p, "m", " ").await),
        ErrorCode::InvalidRequest
    );
    f.core.close_matter(&p, "m", "settled").await.unwrap();
    let mut b = req("m", "ann", "");
    b.org = Some("beta".into());
    assert_eq!(code(f.core.add_custodian(&p, b).await), ErrorCode::Conflict);
    assert_eq!(
        code(f.core.close_matter(&p, "m", "again").await),
        ErrorCode::Conflict
    );
}

#[tokio::test]
async fn a_hold_keeps_every_backup_that_retention_would_expire() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 10).await;
    hold(&f, "m", "ann").await;
    let plan = f
        .core
        .retention_dry_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!(plan.expired, 0);
    assert!(
        plan.items
            .iter()
            .filter(|i| i.reason != "newest")
            .all(|i| i.reason == "hold:m"),
        "{plan:?}"
    );
    let run = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!((run.expired, run.kept), (0, 10));
    assert_eq!(backups_of(&f, &a).len(), 10);
}

#[tokio::test]
async fn without_a_hold_the_same_history_expires_to_the_newest() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let h = history(&f, &a, 10).await;
    let run = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!((run.expired, run.kept, run.refused), (9, 1, 0));
    assert_eq!(backups_of(&f, &a), vec![h[9].backup.clone()]);
    // One audit entry per destroyed backup, in its transaction.
    assert_eq!(audited(&f, "backup.destroy", "ok").len(), 9);
}

#[tokio::test]
async fn a_hold_covers_devices_enrolled_later_and_backups_committed_while_it_lasts() {
    let f = Fixture::new();
    dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    hold(&f, "m", "ann").await;
    let later = dev(&f, "acme", "ann", "new-laptop").await;
    history(&f, &later, 5).await;
    let run = f
        .core
        .retention_run(&f.admin(), later.archive.as_str())
        .await
        .unwrap();
    assert_eq!(run.expired, 0);
    assert_eq!(backups_of(&f, &later).len(), 5);
    // Another user's device is not covered.
    let bob = dev(&f, "acme", "bob", "pc").await;
    history(&f, &bob, 3).await;
    let run = f
        .core
        .retention_run(&f.admin(), bob.archive.as_str())
        .await
        .unwrap();
    assert_eq!(run.expired, 2);
}

#[tokio::test]
async fn a_tiers_policy_applies_the_stricter_of_it_and_the_org() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let p = lha("lena");
    f.core
        .create_hold_policy(
            &p,
            CreateHoldPolicy {
                name: "daily-60".into(),
                keep: Some("tiers".into()),
                retention: [
                    ("keep_all".to_string(), "1d".to_string()),
                    ("daily".to_string(), "60d".to_string()),
                ]
                .into(),
                keep_deleted: None,
            },
        )
        .await
        .unwrap();
    f.core
        .create_matter(
            &p,
            CreateMatter {
                name: "m".into(),
                policy: "daily-60".into(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    f.core.add_custodian(&p, req("m", "ann", "")).await.unwrap();
    // Two backups a day for ten days, then a month on: one a day is kept.
    for i in 0..20u32 {
        backup(&f, &a, &[format!("b{i}").as_bytes()]).await;
        f.clock.advance(DAY / 2);
    }
    f.clock.advance(30 * DAY);
    let run = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!(run.kept, 10, "{run:?}");
    assert_eq!(run.expired, 10);
}

#[tokio::test]
async fn a_hold_locks_keeping_deleted_files_on_the_custodians_devices_until_released() {
    let f = Fixture::new();
    release_rule(&f, 1, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    let b = dev(&f, "acme", "bob", "desktop").await;
    let kd = |d: &DeviceAuth| f.core.device_settings(d).unwrap().values["keep_deleted"].clone();
    let before = kd(&a);
    assert_eq!(
        (before.value.clone(), before.locked),
        (serde_json::json!(0), false)
    );
    // The org keeps deleted files 90 days (pushed: saved values reach only
    // devices enrolled later), a policy 30: the stricter holds.
    f.clock.advance(SEC);
    f.core
        .set_org_settings(
            &f.admin(),
            &name("acme"),
            &SetOrgSettings {
                group: "device_defaults".into(),
                values: [("keep_deleted".to_string(), serde_json::Value::from("90d"))].into(),
                mode: Some("push".into()),
            },
        )
        .await
        .unwrap();
    let p = lha("lena");
    let keeping_deleted = |n: &str, keep: &str| {
        f.core.create_hold_policy(
            &p,
            CreateHoldPolicy {
                name: n.into(),
                keep: None,
                retention: Default::default(),
                keep_deleted: Some(keep.into()),
            },
        )
    };
    let bad = keeping_deleted("vague", "a while").await.unwrap_err();
    assert_eq!(bad.code(), ErrorCode::InvalidRequest);
    assert!(bad.to_string().contains("keep_deleted"), "{bad}");
    let d30 = keeping_deleted("d30", "30d").await.unwrap();
    assert_eq!(d30.keep_deleted, "30d");
    f.core
        .create_matter(
            &p,
            CreateMatter {
                name: "m30".into(),
                policy: "d30".into(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    f.clock.advance(SEC);
    f.core
        .add_custodian(&p, req("m30", "ann", ""))
        .await
        .unwrap();
    let held = kd(&a);
    assert!(held.locked, "{held:?}");
    assert_eq!(held.value, serde_json::json!(90 * 86_400));
    assert_eq!(held.locked_by.as_deref(), Some("legal hold m30"));
    assert!(held.pushed_at > before.pushed_at, "a hold is a push");
    // A second hold under a keep-all policy (deleted files kept forever by
    // default) wins; bob, not held, keeps the org's value, unlocked.
    f.clock.advance(SEC);
    hold(&f, "m-all", "ann").await;
    let held2 = kd(&a);
    assert_eq!(
        (held2.value.clone(), held2.text.as_str()),
        (serde_json::Value::Null, "forever")
    );
    let by = held2.locked_by.clone().unwrap();
    assert!(by.contains("m30") && by.contains("m-all"), "{by}");
    assert!(held2.pushed_at > held.pushed_at);
    assert!(!kd(&b).locked);
    assert_eq!(kd(&b).value, serde_json::json!(90 * 86_400));
    // The version a device polls moves with it.
    assert!(f.core.device_settings(&a).unwrap().version >= held2.pushed_at);
    // Released from the keep-all matter: 90 days again, still locked, and
    // pushed anew (the agent holds the earlier value in its profile).
    f.clock.advance(SEC);
    f.core
        .release_custodian(&p, req("m-all", "ann", "matter settled"))
        .await
        .unwrap();
    let one = kd(&a);
    assert_eq!(
        (one.value.clone(), one.locked),
        (serde_json::json!(90 * 86_400), true)
    );
    assert!(one.pushed_at > held2.pushed_at, "{one:?} after {held2:?}");
    // Released from both: the org's value again, pushed (the agent took the
    // hold's value into its profile and must be told to let it go).
    f.clock.advance(SEC);
    f.core
        .release_custodian(&p, req("m30", "ann", "matter settled"))
        .await
        .unwrap();
    let after = kd(&a);
    assert!(!after.locked, "{after:?}");
    assert_eq!(after.value, serde_json::json!(90 * 86_400));
    assert!(
        after.pushed_at > held2.pushed_at,
        "{after:?} after {held2:?}"
    );
    let listed = f.core.hold_policies(&p).await.unwrap();
    let of = |n: &str| {
        listed
            .iter()
            .find(|x| x.name.as_str() == n)
            .unwrap()
            .keep_deleted
            .clone()
    };
    assert_eq!(
        (of("d30"), of("keep-all")),
        ("30d".to_string(), "forever".to_string())
    );
}

#[tokio::test]
async fn a_release_waits_out_the_quarantine_before_anything_it_protected_goes() {
    let f = Fixture::new();
    release_rule(&f, 1, 7 * 86_400);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 4).await;
    hold(&f, "m", "ann").await;
    let c = f
        .core
        .release_custodian(&lha("lena"), req("m", "ann", "matter settled"))
        .await
        .unwrap();
    assert_eq!(c.state, "quarantined");
    let run = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!(run.expired, 0);
    assert!(
        run.items.iter().any(|i| i.reason == "quarantine:m"),
        "{run:?}"
    );
    f.clock.advance(7 * DAY - SEC);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    f.clock.advance(2 * SEC);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        3
    );
    let released = audited(&f, "hold.release", "ok");
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].details["matter"], "m");
}

#[tokio::test]
async fn the_two_person_rule_needs_a_second_legal_hold_admin() {
    let f = Fixture::new();
    release_rule(&f, 2, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 3).await;
    hold(&f, "m", "ann").await;
    let first = f
        .core
        .release_custodian(&lha("lena"), req("m", "ann", "settled"))
        .await
        .unwrap();
    assert_eq!(first.state, "release_pending");
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    // The same admin again does not count twice.
    let e = f
        .core
        .release_custodian(&lha("lena"), req("m", "ann", "settled"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.to_string().contains("second legal-hold admin"), "{e}");
    let second = f
        .core
        .release_custodian(&lha("max"), req("m", "ann", "agreed"))
        .await
        .unwrap();
    assert_eq!(second.state, "released");
    assert_eq!(second.approvals.len(), 2);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        2
    );
    assert_eq!(audited(&f, "hold.release_requested", "ok").len(), 1);
}

#[tokio::test]
async fn two_matters_on_one_custodian_both_have_to_release() {
    let f = Fixture::new();
    release_rule(&f, 1, 86_400);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 3).await;
    hold(&f, "a", "ann").await;
    hold(&f, "b", "ann").await;
    f.core
        .release_custodian(&lha("lena"), req("a", "ann", "done"))
        .await
        .unwrap();
    f.clock.advance(2 * DAY);
    let r = f
        .core
        .retention_dry_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!(r.expired, 0);
    assert!(r.items.iter().any(|i| i.reason == "hold:b"), "{r:?}");
    f.core
        .release_custodian(&lha("lena"), req("b", "ann", "done"))
        .await
        .unwrap();
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    f.clock.advance(DAY + SEC);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        2
    );
}

#[tokio::test]
async fn closing_a_matter_releases_every_custodian_with_an_entry_each() {
    let f = Fixture::new();
    dev(&f, "acme", "ann", "laptop").await;
    dev(&f, "acme", "bob", "pc").await;
    hold(&f, "m", "ann").await;
    hold(&f, "m", "bob").await;
    let m = f
        .core
        .close_matter(&lha("lena"), "m", "case closed")
        .await
        .unwrap();
    assert_eq!(m.status, "closed");
    assert_eq!(m.active_custodians, 0);
    assert!(
        m.custodians.iter().all(|c| c.state == "quarantined"),
        "{m:?}"
    );
    let rel = audited(&f, "hold.release", "ok");
    assert_eq!(rel.len(), 2);
    assert!(rel.iter().all(|e| e.details["matter"] == "m"));
    assert_eq!(audited(&f, "hold.matter.close", "ok").len(), 1);
}

#[tokio::test]
async fn a_scoped_legal_hold_admin_holds_only_users_in_its_subtree() {
    let f = Fixture::new();
    dev(&f, "acme", "ann", "laptop").await;
    dev(&f, "beta", "bob", "pc").await;
    matter(&f, &lha("lena"), "m").await;
    let scoped = f.principal("sam", Role::LegalHoldAdmin, Some("acme"));
    f.core
        .add_custodian(&scoped, req("m", "ann", ""))
        .await
        .unwrap();
    // Outside its scope the user is "not found", like an absent one.
    assert_eq!(
        code(f.core.add_custodian(&scoped, req("m", "bob", "")).await),
        ErrorCode::NotFound
    );
    // Closing releases custodians everywhere: unscoped only.
    assert_eq!(
        code(f.core.close_matter(&scoped, "m", "x").await),
        ErrorCode::Forbidden
    );
    assert_eq!(audited(&f, "hold.matter.close", "refused")[0].actor, "sam");
    assert_eq!(f.core.custodians(&scoped, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_held_user_cannot_be_deactivated_and_a_held_archive_cannot_be_purged() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    backup(&f, &a, &[b"x"]).await;
    hold(&f, "m", "ann").await;
    let e = f
        .core
        .deactivate_user(&f.admin(), &name("acme"), &name("ann"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::HoldActive);
    assert!(e.to_string().contains("m"), "{e}");
    assert_eq!(
        audited(&f, "user.deactivate", "refused")[0].details["matters"],
        "m"
    );
    // The device alone may be deactivated: its archive stays held.
    let d = f
        .core
        .deactivate_device(&f.admin(), &a.device)
        .await
        .unwrap();
    assert!(d.deactivated_at.is_some());
    assert_eq!(d.held_by, vec!["hold:m".to_string()]);
    let e = f
        .core
        .purge_device(&f.admin(), &a.device, "clean up")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::HoldActive);
    assert_eq!(backups_of(&f, &a).len(), 1);
    assert_eq!(
        audited(&f, "device.purge", "refused")[0].details["matters"],
        "m"
    );
}

#[tokio::test]
async fn a_deactivated_device_is_refused_and_comes_back_intact() {
    let f = Fixture::new();
    let t = {
        f.org("acme", None).await;
        f.device("acme", "ann", "laptop").await
    };
    let a = f.core.authenticate_device(&t.token).unwrap();
    backup(&f, &a, &[b"x", b"y"]).await;
    f.core
        .deactivate_device(&f.admin(), &a.device)
        .await
        .unwrap();
    let e = f.core.authenticate_device(&t.token).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DeviceDeactivated);
    assert_eq!(e.code().http_status(), 401);
    f.clock.advance(100 * DAY);
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (0, 0));
    f.core
        .reactivate_device(&f.admin(), &a.device)
        .await
        .unwrap();
    f.core.authenticate_device(&t.token).unwrap();
    assert_eq!(backups_of(&f, &a).len(), 1);
}

#[tokio::test]
async fn cold_storage_purges_after_its_period_and_never_while_held() {
    let f = Fixture::new();
    release_rule(&f, 1, 2 * 86_400);
    let a = dev(&f, "acme", "ann", "laptop").await;
    let b = dev(&f, "acme", "bob", "pc").await;
    set(&f, "acme", "retention", &[("cold_storage", "30d")]).await;
    backup(&f, &a, &[b"ann data"]).await;
    backup(&f, &b, &[b"bob data"]).await;
    hold(&f, "m", "ann").await;
    f.core
        .deactivate_device(&f.admin(), &a.device)
        .await
        .unwrap();
    f.core
        .deactivate_device(&f.admin(), &b.device)
        .await
        .unwrap();
    f.clock.advance(29 * DAY);
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (0, 0));
    f.clock.advance(2 * DAY);
    // Bob's goes; Ann's is held and waits, re-evaluated at every pass.
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (1, 1));
    assert!(backups_of(&f, &b).is_empty());
    assert_eq!(backups_of(&f, &a).len(), 1);
    f.clock.advance(365 * DAY);
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (0, 1));
    f.core
        .release_custodian(&lha("lena"), req("m", "ann", "done"))
        .await
        .unwrap();
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (0, 1));
    f.clock.advance(2 * DAY + SEC);
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (1, 0));
    assert!(backups_of(&f, &a).is_empty());
    let dev = f.core.device(&f.admin(), &a.device).await.unwrap();
    assert!(dev.purged_at.is_some());
    // A purged device does not come back.
    assert_eq!(
        code(f.core.reactivate_device(&f.admin(), &a.device).await),
        ErrorCode::Conflict
    );
}

#[tokio::test]
async fn a_hold_placed_between_plan_and_destruction_wins() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let h = history(&f, &a, 3).await;
    let mut ctx = GateCtx::default();
    // The view is read (the plan)…
    let v = f.core.archive_view(&mut ctx, &a.archive).unwrap().clone();
    assert!(!v.protected.contains_key(&h[0].backup));
    // …a hold lands before the destruction…
    hold(&f, "m", "ann").await;
    let what = Doomed::Backup {
        archive: &a.archive,
        backup: &h[0].backup,
        origin: Origin::Tiers,
    };
    // …and the gate, asked again at the moment of destruction, sees it.
    let (verdict, done) = f.core.destroy(&f.admin(), &mut ctx, what, "test").unwrap();
    assert!(!done);
    assert!(
        matches!(
            verdict,
            Verdict::Deny {
                code: "hold_active",
                ..
            }
        ),
        "{verdict:?}"
    );
    let refused = audited(&f, "backup.destroy", "refused");
    assert_eq!(refused[0].details["matters"], "m");
    assert_eq!(refused[0].details["code"], "hold_active");
}

#[tokio::test]
async fn hold_placement_races_retention_runs_and_never_loses() {
    // Many rounds: a run and a placement at once; whatever the order, a
    // backup destroyed was destroyed before the hold existed.
    for round in 0..20u32 {
        let f = Arc::new(Fixture::new());
        let a = dev(&f, "acme", "ann", "laptop").await;
        short_tiers(&f, "acme").await;
        history(&f, &a, 6).await;
        matter(&f, &lha("lena"), "m").await;
        let (f1, f2) = (f.clone(), f.clone());
        let arch = a.archive.clone();
        let run =
            tokio::spawn(async move { f1.core.retention_run(&f1.admin(), arch.as_str()).await });
        let place = tokio::spawn(async move {
            if round % 2 == 0 {
                tokio::task::yield_now().await;
            }
            f2.core
                .add_custodian(&lha("lena"), req("m", "ann", ""))
                .await
                .unwrap();
            f2.core.meta.audit_head().unwrap()
        });
        let report = run.await.unwrap().unwrap();
        let placed_at = place.await.unwrap();
        // Every destruction's audit entry precedes the placement's.
        for e in audited(&f, "backup.destroy", "ok") {
            assert!(
                e.seq < placed_at,
                "round {round}: destroyed at {} after the hold at {placed_at}",
                e.seq
            );
        }
        let left = backups_of(&f, &a).len() as u64;
        assert_eq!(left + report.expired, 6);
        // Once placed, nothing more goes.
        let again = f
            .core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap();
        assert_eq!(again.expired, 0);
    }
}

#[tokio::test]
async fn quotas_never_refuse_a_held_custodian() {
    let f = Fixture::new();
    let ann = dev(&f, "acme", "ann", "laptop").await;
    let bob = dev(&f, "acme", "bob", "pc").await;
    set(&f, "acme", "quotas", &[("device_bytes", "10")]).await;
    hold(&f, "m", "ann").await;
    put(&f, &ann, None, b"more than ten bytes of data")
        .await
        .unwrap();
    let e = put(&f, &bob, None, b"more than ten bytes of data")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::QuotaExceeded);
}

#[tokio::test]
async fn a_retention_change_names_the_held_custodians_it_does_not_touch() {
    let f = Fixture::new();
    dev(&f, "acme", "ann", "laptop").await;
    hold(&f, "m", "ann").await;
    short_tiers(&f, "acme").await;
    let e = audited(&f, "org.settings.set", "ok");
    let last = e.last().unwrap();
    assert_eq!(last.details["group"], "retention");
    assert_eq!(last.details["held_custodians_untouched"], "acme/ann (m)");
}

#[tokio::test]
async fn every_hold_action_is_audited_with_its_matter_and_the_log_verifies() {
    let f = Fixture::new();
    dev(&f, "acme", "ann", "laptop").await;
    hold(&f, "m", "ann").await;
    f.core
        .release_custodian(&lha("lena"), req("m", "ann", "done"))
        .await
        .unwrap();
    for action in ["hold.matter.create", "hold.place", "hold.release"] {
        let e = audited(&f, action, "ok");
        assert_eq!(e.len(), 1, "{action}");
        assert_eq!(e[0].details["matter"], "m", "{action}");
        assert_eq!(e[0].actor, "lena");
    }
    assert_eq!(audited(&f, "hold.policy.create", "ok").len(), 1);
    assert!(f.core.meta.audit_verify().unwrap().first_break.is_none());
}

// ------------------------------------------------------- the gate, by kind

#[tokio::test]
async fn the_gate_refuses_the_newest_young_unknown_and_retained_backups() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let h = history(&f, &a, 3).await;
    let young = backup(&f, &a, &[b"young"]).await;
    let mut ctx = GateCtx::default();
    fn ask<'a>(archive: &'a Name, b: &'a Name, origin: Origin) -> Doomed<'a> {
        Doomed::Backup {
            archive,
            backup: b,
            origin,
        }
    }
    let deny = |v: Verdict| match v {
        Verdict::Deny { code, .. } => code,
        Verdict::Allow => "allow",
    };
    // Defaults: keep all 7 days, then daily: the old ones are kept by the
    // daily tier under the built-in policy, but a plugin may expire them.
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &h[0].backup, Origin::Tiers))
                .unwrap()
        ),
        "retained"
    );
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &h[0].backup, Origin::Plugin))
                .unwrap()
        ),
        "allow"
    );
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &young.backup, Origin::Plugin))
                .unwrap()
        ),
        "newest_backup"
    );
    let ghost = name("bk-ghost");
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &ghost, Origin::Plugin))
                .unwrap()
        ),
        "unknown"
    );
    // min_age: a young backup, not the newest.
    f.clock.advance(SEC);
    backup(&f, &a, &[b"newer"]).await;
    let mut ctx = GateCtx::default();
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &young.backup, Origin::Plugin))
                .unwrap()
        ),
        "min_age"
    );
    // A purge takes the newest too, unless held.
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &young.backup, Origin::Purge))
                .unwrap()
        ),
        "allow"
    );
    hold(&f, "m", "ann").await;
    assert_eq!(
        deny(
            f.core
                .may_destroy(&mut ctx, &ask(&a.archive, &young.backup, Origin::Purge))
                .unwrap()
        ),
        "hold_active"
    );
}

#[tokio::test]
async fn incomplete_backups_never_count_as_the_newest() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let full = backup(&f, &a, &[b"full"]).await;
    f.clock.advance(DAY);
    // An incomplete backup after it.
    let s = f.core.open_session(&a, &a.archive, None).await.unwrap();
    let id = put(&f, &a, Some(&s.session), b"partial").await.unwrap();
    let (part, _) = f
        .core
        .commit(
            &a.archive,
            s.session.as_str(),
            CommitRequest {
                manifest: id,
                blocks: vec![],
                stats: coffer_types::wire::BackupStats {
                    files: 1,
                    bytes: 1,
                    percent: 40.0,
                },
            },
        )
        .await
        .unwrap();
    f.clock.advance(30 * DAY);
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    // Both kept: the newest complete, and the newer incomplete one.
    assert_eq!(r.expired, 0, "{r:?}");
    // A complete one after both: the incomplete one stops counting.
    backup(&f, &a, &[b"full again"]).await;
    f.clock.advance(2 * DAY);
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    let gone: HashSet<_> = r
        .items
        .iter()
        .filter(|i| i.verdict == "expired")
        .map(|i| i.backup.clone())
        .collect();
    assert_eq!(gone, [full.backup, part.backup].into_iter().collect());
}

// ------------------------------------------------------------ C3 plugins

/// A retention plugin service answering what the test gives it, in the
/// shape the binary's plugin manager answers (after its own guard).
struct Scripted(Mutex<Option<crate::Result<serde_json::Value>>>);

impl PluginAdmin for Scripted {
    fn list(&self) -> Vec<coffer_types::wire::PluginInfo> {
        Vec::new()
    }
    fn set_enabled(&self, _: &str, _: bool) -> crate::Result<coffer_types::wire::PluginInfo> {
        Err(CoreError::NotFound("no".into()))
    }
    fn reload(&self, _: String) -> BoxFuture<'_, crate::Result<coffer_types::wire::PluginInfo>> {
        Box::pin(async { Err(CoreError::NotFound("no".into())) })
    }
    fn report(
        &self,
        _: String,
        _: coffer_types::wire::RunReport,
        _: Inventory,
        _: coffer_types::UnixMillis,
    ) -> BoxFuture<'_, crate::Result<(String, Vec<u8>)>> {
        Box::pin(async { Err(CoreError::NotFound("no".into())) })
    }
    fn retention_plan(
        &self,
        _: PlanTarget,
        _: Option<String>,
    ) -> BoxFuture<'_, crate::Result<serde_json::Value>> {
        let r = self.0.lock().unwrap().take().expect("one plan per run");
        Box::pin(async move { r })
    }
}

async fn plugin_org(f: &Fixture) -> (DeviceAuth, Vec<BackupInfo>) {
    let a = dev(f, "acme", "ann", "laptop").await;
    set(
        f,
        "acme",
        "retention",
        &[("plugin", "hostile"), ("min_age", "1d")],
    )
    .await;
    let h = history(f, &a, 5).await;
    (a, h)
}

fn script(c: &Coffer, plan: crate::Result<serde_json::Value>) -> Arc<Scripted> {
    let s = Arc::new(Scripted(Mutex::new(Some(plan))));
    c.set_plugins(s.clone());
    s
}

fn proposal(ids: &[&Name]) -> serde_json::Value {
    serde_json::json!({
        "expire": ids.iter().map(|b| serde_json::json!({"backup": b, "reason": "plugin"})).collect::<Vec<_>>(),
        "kept_by_host": [],
        "unknown": [],
    })
}

#[tokio::test]
async fn a_plugin_proposing_everything_expires_only_what_nothing_protects() {
    let f = Fixture::new();
    let (a, h) = plugin_org(&f).await;
    let all: Vec<&Name> = h.iter().map(|b| &b.backup).collect();
    script(&f.core, Ok(proposal(&all)));
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!(r.policy, "plugin:hostile");
    assert_eq!((r.expired, r.refused), (4, 1), "{r:?}");
    assert_eq!(backups_of(&f, &a), vec![h[4].backup.clone()]);
    // The drop of the newest is audited.
    let refused = audited(&f, "backup.destroy", "refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].details["code"], "newest_backup");
}

#[tokio::test]
async fn a_plugin_proposing_held_backups_gets_each_drop_audited_with_the_matter() {
    let f = Fixture::new();
    let (a, h) = plugin_org(&f).await;
    hold(&f, "m", "ann").await;
    let all: Vec<&Name> = h.iter().map(|b| &b.backup).collect();
    script(&f.core, Ok(proposal(&all)));
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!((r.expired, r.refused), (0, 5));
    let refused = audited(&f, "backup.destroy", "refused");
    assert_eq!(refused.len(), 5);
    assert!(refused
        .iter()
        .all(|e| e.details["matters"] == "m" && e.details["code"] == "hold_active"));
    assert_eq!(backups_of(&f, &a).len(), 5);
}

#[tokio::test]
async fn a_plan_naming_an_unknown_backup_is_rejected_whole() {
    let f = Fixture::new();
    let (a, h) = plugin_org(&f).await;
    let mut plan = proposal(&[&h[0].backup, &h[1].backup]);
    plan["unknown"] = serde_json::json!(["bk-from-another-archive"]);
    script(&f.core, Ok(plan));
    let e = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PluginFailed);
    assert!(e.to_string().contains("rejected"), "{e}");
    assert_eq!(backups_of(&f, &a).len(), 5);
    assert_eq!(audited(&f, "retention.plan_rejected", "ok").len(), 1);
}

#[tokio::test]
async fn a_failing_plugin_expires_nothing_and_is_audited() {
    let f = Fixture::new();
    let (a, _) = plugin_org(&f).await;
    script(
        &f.core,
        Err(CoreError::PluginFailed("trapped: unreachable".into())),
    );
    assert_eq!(
        code(f.core.retention_run(&f.admin(), a.archive.as_str()).await),
        ErrorCode::PluginFailed
    );
    assert_eq!(backups_of(&f, &a).len(), 5);
    assert_eq!(audited(&f, "retention.plan_failed", "ok").len(), 1);
    // Without a plugin service at all it fails closed too.
    let g = Fixture::new();
    let (b, _) = plugin_org(&g).await;
    assert!(g
        .core
        .retention_run(&g.admin(), b.archive.as_str())
        .await
        .is_err());
    assert_eq!(backups_of(&g, &b).len(), 5);
}

#[tokio::test]
async fn a_plugin_cannot_expire_below_min_age() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    set(
        &f,
        "acme",
        "retention",
        &[("plugin", "hostile"), ("min_age", "7d")],
    )
    .await;
    // A burst of fakes within the hour (a compromised agent).
    let mut h = Vec::new();
    for i in 0..5u32 {
        h.push(backup(&f, &a, &[format!("burst {i}").as_bytes()]).await);
        f.clock.advance(60 * SEC);
    }
    let all: Vec<&Name> = h.iter().map(|b| &b.backup).collect();
    script(&f.core, Ok(proposal(&all)));
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!((r.expired, r.refused), (0, 5));
    let codes: HashSet<String> = audited(&f, "backup.destroy", "refused")
        .iter()
        .map(|e| e.details["code"].clone())
        .collect();
    assert_eq!(
        codes,
        ["min_age", "newest_backup"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[tokio::test]
async fn a_plugin_dry_run_shows_what_the_gate_would_keep() {
    let f = Fixture::new();
    let (a, h) = plugin_org(&f).await;
    script(&f.core, Ok(proposal(&[&h[0].backup, &h[4].backup])));
    let r = f
        .core
        .retention_dry_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert!(r.dry_run);
    let v: Vec<(&str, &str)> = r
        .items
        .iter()
        .map(|i| (i.verdict.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(v[0], ("expire", "plugin:hostile"));
    assert_eq!(v[1], ("keep", "plugin"));
    assert_eq!(v[4], ("keep", "newest"));
    assert_eq!(backups_of(&f, &a).len(), 5);
}

// -------------------------------------------------------------- C4 clock

#[tokio::test]
async fn a_clock_set_back_a_year_never_makes_new_backups_look_old() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let before = backup(&f, &a, &[b"before"]).await;
    f.clock.advance(2 * DAY);
    let now = f.core.compliance_now();
    f.clock.set(now - YEAR);
    let after = backup(&f, &a, &[b"after"]).await;
    // Stamped on the compliance clock, not a year ago.
    assert!(after.committed_at >= now, "{} < {now}", after.committed_at);
    assert!(after.committed_at > before.committed_at);
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    // Only the old one may go (it is 2 days old); the new one is newest.
    assert_eq!(r.expired, 1);
    assert_eq!(backups_of(&f, &a), vec![after.backup]);
    assert_eq!(audited(&f, "clock.backwards", "ok").len(), 1);
}

#[tokio::test]
async fn a_clock_set_back_never_shortens_a_quarantine() {
    let f = Fixture::new();
    release_rule(&f, 1, 7 * 86_400);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 3).await;
    hold(&f, "m", "ann").await;
    let c = f
        .core
        .release_custodian(&lha("lena"), req("m", "ann", "done"))
        .await
        .unwrap();
    // Set back a year, then forward two years: the quarantine still ends
    // a week of real time after the release.
    f.clock.set(f.core.compliance_now() - YEAR);
    f.clock.advance(3 * DAY);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    f.clock.set(f.clock_now() + 2 * YEAR);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    assert!(f.core.compliance_now() < c.quarantine_until.unwrap());
    // The days the wall clock was behind do not count (the compliance
    // clock waited); a week of real time after it was set right, it ends.
    f.clock.advance(5 * DAY);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    f.clock.advance(2 * DAY);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        2
    );
}

#[tokio::test]
async fn a_clock_jumping_ten_years_ahead_destroys_nothing_young() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let b = dev(&f, "acme", "bob", "pc").await;
    set(
        &f,
        "acme",
        "retention",
        &[
            ("keep_all", "2d"),
            ("daily", "2d"),
            ("weekly", "2d"),
            ("monthly", "2d"),
            ("min_age", "2d"),
            ("cold_storage", "10d"),
        ],
    )
    .await;
    backup(&f, &a, &[b"one"]).await;
    backup(&f, &a, &[b"two"]).await;
    backup(&f, &b, &[b"bob"]).await;
    f.core
        .deactivate_device(&f.admin(), &b.device)
        .await
        .unwrap();
    f.clock.set(f.clock_now() + 10 * YEAR);
    f.clock.advance(60 * SEC);
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        0
    );
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (0, 0));
    assert_eq!(audited(&f, "clock.forward_jump", "ok").len(), 1);
    let s = f.core.clock_status(&f.admin()).await.unwrap();
    assert_eq!(s.state, "ahead");
    // An admin who knows the new time is right accepts it; then the
    // expiries run.
    assert_eq!(
        code(
            f.core
                .accept_clock(&f.principal("rita", Role::ReadOnly, None))
                .await
        ),
        ErrorCode::Forbidden
    );
    f.core.accept_clock(&f.admin()).await.unwrap();
    assert_eq!(
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap()
            .expired,
        1
    );
    assert_eq!(f.core.cold_storage_pass().await.unwrap(), (1, 0));
    assert_eq!(audited(&f, "clock.accept", "ok").len(), 1);
}

#[tokio::test]
async fn the_compliance_clock_survives_a_restart_with_the_clock_set_back() {
    let f = Fixture::new();
    f.clock.advance(10 * DAY);
    let before = f.core.persist_compliance().unwrap();
    f.clock.set(crate::testing::START - YEAR);
    let again = f.restarted();
    assert!(again.compliance_now() >= before);
    // Accepting never moves it back.
    assert_eq!(
        code(again.accept_clock(&f.admin()).await),
        ErrorCode::Conflict
    );
    assert!(again.compliance_now() >= before);
}

#[tokio::test]
async fn downtime_is_not_counted_until_accepted() {
    let f = Fixture::new();
    let at = f.core.persist_compliance().unwrap();
    // The server is "down" for a month: the wall clock moved, the
    // monotonic one of the new process starts again.
    f.clock.set(at + 30 * DAY);
    let again = f.restarted();
    let now = again.compliance_now();
    assert!(now < at + DAY, "{}", now - at);
    again.accept_clock(&f.admin()).await.unwrap();
    assert_eq!(again.compliance_now(), at + 30 * DAY);
}

impl Fixture {
    fn clock_now(&self) -> u64 {
        use crate::Clock;
        self.clock.now()
    }
}
