//! The core's rules through its own API, on the test fixture: scopes and
//! roles, tokens and their expiry on the manual clock, and the audit log
//! of changes and refusals.

use coffer_types::wire::{CreateAccount, CreateToken};
use coffer_types::{ErrorCode, Role};

use crate::testing::{name, Fixture};
use crate::AuditQuery;

async fn tree(f: &Fixture) {
    f.org("acme", None).await;
    f.org("acme-eu", Some("acme")).await;
    f.org("acme-eu-sales", Some("acme-eu")).await;
    f.org("beta", None).await;
}

fn code<T: std::fmt::Debug>(r: crate::Result<T>) -> ErrorCode {
    r.expect_err("an error").code()
}

#[tokio::test]
async fn an_org_admin_sees_and_changes_its_subtree_only() {
    let f = Fixture::new();
    tree(&f).await;
    let eu_dev = f.device("acme-eu-sales", "ann", "ann-laptop").await;
    let top_dev = f.device("acme", "bob", "bob-laptop").await;
    let c = &f.core;
    let p = f.principal("eve", Role::OrgAdmin, Some("acme-eu"));

    let devices = c.devices(&p).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device, eu_dev.device);
    let orgs: Vec<String> = c
        .orgs(&p)
        .await
        .unwrap()
        .iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(orgs, ["acme-eu", "acme-eu-sales"]);
    // Outside the subtree: the same 404 as something absent.
    let outside = c.device(&p, &top_dev.device).await.unwrap_err();
    let absent = c.device(&p, &name("dv_nope")).await.unwrap_err();
    assert_eq!(
        (outside.code(), absent.code()),
        (ErrorCode::NotFound, ErrorCode::NotFound)
    );
    assert_eq!(
        code(c.revoke_device(&p, &top_dev.device).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.add_user(&p, name("beta"), name("x")).await),
        ErrorCode::NotFound
    );
    // A top-level org needs the admin role.
    let e = c.create_org(&p, name("gamma"), None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert!(e.to_string().contains("admin role"), "{e}");
    // Inside its subtree it works.
    c.create_org(&p, name("acme-eu-ops"), Some(name("acme-eu")))
        .await
        .unwrap();
    c.revoke_device(&p, &eu_dev.device).await.unwrap();
    // Server-wide things are not its business.
    assert_eq!(code(c.workers(&p).await), ErrorCode::Forbidden);
    assert_eq!(
        code(c.audit_list(&p, AuditQuery::default()).await),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn read_only_reads_in_scope_and_changes_nothing() {
    let f = Fixture::new();
    tree(&f).await;
    let d = f.device("acme-eu", "ann", "ann-laptop").await;
    let c = &f.core;
    let p = f.principal("rita", Role::ReadOnly, None);
    assert_eq!(c.devices(&p).await.unwrap().len(), 1);
    for e in [
        c.create_org(&p, name("x"), None).await.map(|_| ()),
        c.add_user(&p, name("acme"), name("x")).await.map(|_| ()),
        c.revoke_device(&p, &d.device).await.map(|_| ()),
        c.rotate_device_token(&p, &d.device).await.map(|_| ()),
        c.revoke_device(&p, &name("dv_absent")).await.map(|_| ()),
    ] {
        let e = e.unwrap_err();
        assert_eq!(e.code(), ErrorCode::Forbidden, "{e}");
        assert!(e.to_string().contains("admin or org-admin role"), "{e}");
    }
    // Scoped read-only: the subtree only, and no server-wide reads.
    let scoped = f.principal("sam", Role::ReadOnly, Some("beta"));
    assert!(c.devices(&scoped).await.unwrap().is_empty());
    assert_eq!(code(c.workers(&scoped).await), ErrorCode::Forbidden);
    assert!(c.workers(&p).await.is_ok());
}

#[tokio::test]
async fn tokens_expire_on_the_server_clock_and_die_with_their_account() {
    let f = Fixture::new();
    tree(&f).await;
    let token = f
        .account_token("eve", Role::OrgAdmin, Some("acme-eu"), "1h")
        .await;
    let p = f.core.authenticate_admin(&token).unwrap();
    assert_eq!(
        (p.role(), p.org().map(|o| o.to_string())),
        (Role::OrgAdmin, Some("acme-eu".into()))
    );
    f.clock.advance(3_599_000);
    assert!(f.core.authenticate_admin(&token).is_ok());
    f.clock.advance(1_000);
    let e = f.core.authenticate_admin(&token).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
    assert!(e.to_string().contains("expired"), "{e}");

    let admin = f.admin();
    let t2 = f
        .core
        .create_token(
            &admin,
            CreateToken {
                account: name("eve"),
                expires: Some("never".into()),
            },
        )
        .await
        .unwrap();
    assert!(f.core.authenticate_admin(&t2.token).is_ok());
    f.core
        .set_account_disabled(&admin, &name("eve"), true)
        .await
        .unwrap();
    assert_eq!(
        code(f.core.authenticate_admin(&t2.token)),
        ErrorCode::Unauthorized
    );
    f.core
        .set_account_disabled(&admin, &name("eve"), false)
        .await
        .unwrap();
    f.core.revoke_token(&admin, &t2.id).await.unwrap();
    assert_eq!(
        code(f.core.authenticate_admin(&t2.token)),
        ErrorCode::Unauthorized
    );
    // Not a token at all.
    assert_eq!(
        code(f.core.authenticate_admin("cfa_0000")),
        ErrorCode::Unauthorized
    );
    assert_eq!(
        code(f.core.authenticate_admin("cfd_0000")),
        ErrorCode::Unauthorized
    );
}

#[tokio::test]
async fn account_rules_delegation_and_the_last_admin() {
    let f = Fixture::new();
    tree(&f).await;
    let c = &f.core;
    let admin = f.admin();
    let boot = c.bootstrap_admin().await.unwrap().expect("a first token");
    assert!(c.bootstrap_admin().await.unwrap().is_none());
    let boot_p = c.authenticate_admin(&boot).unwrap();
    let acct = |n: &str, role, org: Option<&str>| CreateAccount {
        name: name(n),
        role,
        org: org.map(name),
        password: None,
    };
    // An org-admin needs an org; an admin has none.
    assert_eq!(
        code(
            c.create_account(&admin, acct("x", Role::OrgAdmin, None))
                .await
        ),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(
            c.create_account(&admin, acct("x", Role::Admin, Some("acme")))
                .await
        ),
        ErrorCode::InvalidRequest
    );
    // An org-admin delegates inside its subtree only.
    let eve = f.principal("eve", Role::OrgAdmin, Some("acme-eu"));
    c.create_account(&eve, acct("ola", Role::ReadOnly, Some("acme-eu-sales")))
        .await
        .unwrap();
    assert_eq!(
        code(
            c.create_account(&eve, acct("x", Role::ReadOnly, Some("beta")))
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.create_account(&eve, acct("x", Role::Admin, None)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            c.create_account(&eve, acct("x", Role::ReadOnly, None))
                .await
        ),
        ErrorCode::Forbidden
    );
    // It sees only accounts of its subtree.
    let seen: Vec<String> = c
        .accounts(&eve)
        .await
        .unwrap()
        .iter()
        .map(|a| a.name.to_string())
        .collect();
    assert_eq!(seen, ["ola"]);
    assert_eq!(
        code(c.delete_account(&eve, &name("admin")).await),
        ErrorCode::NotFound
    );
    // A password is hashed, and short ones are refused.
    let mut with_pw = acct("pw", Role::ReadOnly, None);
    with_pw.password = Some("short".into());
    assert_eq!(
        code(c.create_account(&admin, with_pw.clone()).await),
        ErrorCode::InvalidRequest
    );
    with_pw.password = Some("a long enough password".into());
    assert!(
        c.create_account(&admin, with_pw)
            .await
            .unwrap()
            .has_password
    );
    // The last admin cannot be disabled or deleted.
    assert_eq!(
        code(c.delete_account(&boot_p, &name("admin")).await),
        ErrorCode::Conflict
    );
    c.create_account(&admin, acct("root2", Role::Admin, None))
        .await
        .unwrap();
    c.delete_account(&boot_p, &name("admin")).await.unwrap();
    assert_eq!(code(c.authenticate_admin(&boot)), ErrorCode::Unauthorized);
}

#[tokio::test]
async fn every_change_and_refusal_is_in_the_audit_log_which_verifies() {
    let f = Fixture::new();
    tree(&f).await;
    let d = f.device("acme", "ann", "laptop").await;
    let c = &f.core;
    let ro = f.principal("rita", Role::ReadOnly, None);
    let _ = c.revoke_device(&ro, &d.device).await;
    c.revoke_device(&f.admin(), &d.device).await.unwrap();
    let log = c
        .audit_list(
            &f.admin(),
            AuditQuery {
                limit: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .entries;
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("clock.init", "ok"),
            ("org.create", "ok"),
            ("org.create", "ok"),
            ("org.create", "ok"),
            ("org.create", "ok"),
            ("user.create", "ok"),
            ("device.enroll", "ok"),
            ("device.revoke", "refused"),
            ("device.revoke", "ok"),
        ]
    );
    assert_eq!(log[7].actor, "rita");
    assert!(log[7].details["reason"].contains("admin or org-admin"));
    assert_eq!(log[8].target, format!("device:{}", d.device));
    let v = c.audit_verify(&f.admin()).await.unwrap();
    assert!(v.ok && v.entries == 9, "{v:?}");
    // Only unscoped holders of read-audit read it.
    let lha = f.principal("lena", Role::LegalHoldAdmin, None);
    assert!(c.audit_verify(&lha).await.is_ok());
    assert_eq!(code(c.audit_verify(&ro).await), ErrorCode::Forbidden);
}

#[tokio::test]
async fn pins_written_as_their_session_closes_are_released() {
    let f = Fixture::new();
    f.org("acme", None).await;
    let t = f.device("acme", "ann", "laptop").await;
    let dev = f.core.authenticate_device(&t.token).unwrap();
    let archive = dev.archive.clone();
    let s = f.core.open_session(&dev, &archive, None).await.unwrap();
    let body = bytes::Bytes::from_static(b"a block");
    let id = coffer_types::BlockId::of(&body);
    f.core
        .put_block(
            &archive,
            &id.to_hex(),
            Some(body.len() as u64),
            Some(s.session.as_str()),
            futures::stream::iter([Ok::<_, std::io::Error>(body.clone())]),
        )
        .await
        .unwrap();
    assert_eq!(f.core.meta.pinned_count(&archive, &s.session).unwrap(), 1);
    // An aborted session's pins stay: its blocks are kept for the
    // collection grace (garbage collection drops the pins after it).
    f.core
        .abort(&archive, s.session.as_str(), None)
        .await
        .unwrap();
    assert_eq!(f.core.meta.pinned_count(&archive, &s.session).unwrap(), 1);
    // A committed one's are released at the commit; a `missing` that found
    // it open and writes its pins only after the commit released them: the
    // writes land, then are settled.
    let c = f.core.open_session(&dev, &archive, None).await.unwrap();
    f.core
        .missing_blocks(&archive, vec![id], Some(&c.session))
        .await
        .unwrap();
    f.core
        .commit(
            &archive,
            c.session.as_str(),
            coffer_types::wire::CommitRequest {
                manifest: id,
                blocks: vec![],
                stats: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(f.core.meta.pinned_count(&archive, &c.session).unwrap(), 0);
    f.core
        .meta
        .missing(&archive, &[id], Some(&c.session))
        .unwrap();
    assert_eq!(f.core.meta.pinned_count(&archive, &c.session).unwrap(), 1);
    f.core
        .settle_pins(&archive, Some(&c.session))
        .await
        .unwrap();
    assert_eq!(f.core.meta.pinned_count(&archive, &c.session).unwrap(), 0);
    // An open session's pins stay.
    let s2 = f.core.open_session(&dev, &archive, None).await.unwrap();
    f.core
        .missing_blocks(&archive, vec![id], Some(&s2.session))
        .await
        .unwrap();
    assert_eq!(f.core.meta.pinned_count(&archive, &s2.session).unwrap(), 1);
}
