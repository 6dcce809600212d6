//! The audit chain: appended with the change, verified, and broken by any
//! edit, removal or truncation done behind the store's back.

use super::*;

fn org(n: &str) -> OrgRecord {
    OrgRecord {
        name: name(n),
        parent: None,
        created_at: 1,
    }
}

#[test]
fn entries_are_numbered_chained_and_written_with_the_change() {
    let (_d, s) = open();
    assert!(s.create_org(&org("acme"), &draft("org.create")).unwrap());
    // A change that does not happen writes no entry.
    assert!(!s.create_org(&org("acme"), &draft("org.create")).unwrap());
    s.audit_append(&AuditDraft {
        outcome: "refused".into(),
        ..draft("org.create")
    })
    .unwrap();
    let all = s
        .audit_list(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].seq, all[1].seq), (1, 2));
    assert_eq!(all[0].prev, "0".repeat(64));
    assert_eq!(all[1].prev, all[0].hash);
    assert_eq!(all[1].outcome, "refused");
    assert_eq!(s.audit_head().unwrap(), 2);
    let v = s.audit_verify().unwrap();
    assert_eq!((v.entries, v.first_break), (2, None));
}

#[test]
fn listing_filters_and_pages() {
    let (_d, s) = open();
    for (i, actor) in ["ann", "bob", "ann"].iter().enumerate() {
        s.audit_append(&AuditDraft {
            at: 10 * i as u64,
            actor: actor.to_string(),
            target: format!("device:dv_{i}"),
            ..draft("device.revoke")
        })
        .unwrap();
    }
    let f = |actor: Option<&str>, since, target: Option<&str>, after| AuditFilter {
        actor: actor.map(str::to_string),
        since,
        target: target.map(str::to_string),
        after,
        limit: 10,
    };
    let seqs =
        |f: AuditFilter| -> Vec<u64> { s.audit_list(&f).unwrap().iter().map(|r| r.seq).collect() };
    assert_eq!(seqs(f(Some("ann"), None, None, None)), [1, 3]);
    assert_eq!(seqs(f(None, Some(10), None, None)), [2, 3]);
    assert_eq!(seqs(f(None, None, Some("device:dv_1"), None)), [2]);
    assert_eq!(seqs(f(None, None, Some("device:"), None)), [1, 2, 3]);
    assert_eq!(seqs(f(None, None, None, Some(1))), [2, 3]);
    let mut one = f(None, None, None, None);
    one.limit = 1;
    assert_eq!(seqs(one), [1]);
}

#[test]
fn verify_names_the_first_entry_edited_behind_the_stores_back() {
    let (_d, s) = open();
    for i in 0..5 {
        s.audit_append(&AuditDraft {
            target: format!("org:o{i}"),
            ..draft("org.create")
        })
        .unwrap();
    }
    // Edit entry 3's actor in the database.
    let k = 3u64.to_be_bytes();
    let mut r: AuditRecord = serde_json::from_slice(&s.t.audit.get(k).unwrap().unwrap()).unwrap();
    r.actor = "mallory".into();
    s.t.audit
        .insert(k, serde_json::to_vec(&r).unwrap())
        .unwrap();
    assert_eq!(
        s.audit_verify().unwrap().first_break,
        Some(AuditBreak::Edited { seq: 3 })
    );
    // Recomputing its hash too moves the break to the link after it.
    r.hash = r.computed_hash();
    s.t.audit
        .insert(k, serde_json::to_vec(&r).unwrap())
        .unwrap();
    assert_eq!(
        s.audit_verify().unwrap().first_break,
        Some(AuditBreak::Unlinked { seq: 4 })
    );
}

#[test]
fn removed_and_truncated_entries_are_found() {
    let (_d, s) = open();
    for _ in 0..4 {
        s.audit_append(&draft("org.create")).unwrap();
    }
    s.t.audit.remove(2u64.to_be_bytes()).unwrap();
    assert_eq!(
        s.audit_verify().unwrap().first_break,
        Some(AuditBreak::Gap {
            expected: 2,
            found: 3
        })
    );
    let (_d, s) = open();
    for _ in 0..4 {
        s.audit_append(&draft("org.create")).unwrap();
    }
    s.t.audit.remove(4u64.to_be_bytes()).unwrap();
    assert_eq!(
        s.audit_verify().unwrap().first_break,
        Some(AuditBreak::Truncated {
            head_seq: 4,
            last_seq: 3
        })
    );
}
