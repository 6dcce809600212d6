//! Accounts, admin tokens by hash, revocation and deletion; the device
//! indexes.

use super::*;

fn account(n: &str, role: AccountRole, org: Option<&str>) -> AccountRecord {
    AccountRecord {
        name: name(n),
        role,
        org: org.map(name),
        password_hash: None,
        disabled: false,
        created_at: 1,
        created_by: "tester".into(),
    }
}

fn token(id: &str, account: &str, hash: u8) -> AdminTokenRecord {
    AdminTokenRecord {
        id: name(id),
        account: name(account),
        hash: [hash; 32],
        created_at: 1,
        expires_at: None,
        revoked_at: None,
        created_by: "tester".into(),
    }
}

#[test]
fn tokens_authenticate_by_hash_until_revoked_or_their_account_is_deleted() {
    let (_d, s) = open();
    let ann = account("ann", AccountRole::OrgAdmin, Some("acme"));
    assert!(s.create_account(&ann, &draft("account.create")).unwrap());
    assert!(!s.create_account(&ann, &draft("account.create")).unwrap());
    s.create_admin_token(&token("tk_1", "ann", 1), &draft("token.create"))
        .unwrap();
    s.create_admin_token(&token("tk_2", "ann", 2), &draft("token.create"))
        .unwrap();
    // A token for an account that does not exist is refused.
    assert!(s
        .create_admin_token(&token("tk_3", "nobody", 3), &draft("token.create"))
        .is_err());
    let (t, a) = s.admin_token_by_hash(&[1; 32]).unwrap().unwrap();
    assert_eq!((t.id.as_str(), a.role), ("tk_1", AccountRole::OrgAdmin));

    let r = s
        .revoke_admin_token(&name("tk_1"), 50, &draft("token.revoke"))
        .unwrap()
        .unwrap();
    assert_eq!(r.revoked_at, Some(50));
    assert!(s.admin_token_by_hash(&[1; 32]).unwrap().is_none());
    // The record stays, for the list.
    assert_eq!(s.admin_tokens(Some(&name("ann"))).unwrap().len(), 2);

    let gone = s
        .delete_account(&name("ann"), &draft("account.delete"))
        .unwrap()
        .unwrap();
    assert_eq!(gone.len(), 2);
    assert!(s.admin_token_by_hash(&[2; 32]).unwrap().is_none());
    assert!(s.admin_tokens(None).unwrap().is_empty());
    assert!(s
        .delete_account(&name("ann"), &draft("account.delete"))
        .unwrap()
        .is_none());
    // Five changes, five entries.
    assert_eq!(s.audit_head().unwrap(), 5);
}

#[test]
fn devices_are_indexed_by_org_and_by_archive() {
    let (_d, s) = open();
    for (dev, ar, org) in [
        ("dv_1", "ar_1", "acme"),
        ("dv_2", "ar_2", "beta"),
        ("dv_3", "ar_3", "acme"),
    ] {
        s.enroll(
            &device(dev, ar, org),
            &ArchiveRecord::new(name(ar), name(dev), 1),
            &draft("device.enroll"),
        )
        .unwrap();
    }
    let ids = |org: &str| -> Vec<String> {
        s.devices_in_org(&name(org))
            .unwrap()
            .into_iter()
            .map(|d| d.id.to_string())
            .collect()
    };
    assert_eq!(ids("acme"), ["dv_1", "dv_3"]);
    assert_eq!(ids("beta"), ["dv_2"]);
    // "acm" is not a prefix match of "acme".
    assert!(ids("acm").is_empty());
    assert_eq!(
        s.device_of_archive(&name("ar_2")).unwrap().unwrap().id,
        name("dv_2")
    );
    assert!(s.device_of_archive(&name("ar_9")).unwrap().is_none());
}
