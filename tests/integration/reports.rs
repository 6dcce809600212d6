//! The health reports through `coffer admin report device-status | orgs |
//! users`: filters, sorting both ways, cursor paging, CSV escaping of odd
//! names, and role scoping.

use std::collections::BTreeSet;
use std::time::Duration;

use coffer_types::wire::ReportPage;
use coffer_types::BlockId;

use crate::harness::*;

fn page(server: &TestServer, args: &[&str]) -> ReportPage {
    let mut a = vec!["report"];
    a.extend_from_slice(args);
    a.extend(["--format", "json"]);
    serde_json::from_str(&cli_ok(&server.cli(&a))).unwrap()
}

fn col(p: &ReportPage, c: &str) -> Vec<String> {
    p.rows
        .iter()
        .map(|r| match &r[c] {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .collect()
}

/// Split CSV text (RFC 4180) into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = vec![];
    let mut row = vec![];
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

const ODD: &str = "=cmd|' /C calc'!A0, \"quoted\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_filter_sort_page_escape_and_scope() {
    let server = TestServer::h2c().await;
    for (org, parent) in [("acme", None), ("acme-eu", Some("acme")), ("beta", None)] {
        let mut a = vec!["org", "create", org];
        if let Some(p) = parent {
            a.extend(["--parent", p]);
        }
        cli_ok(&server.cli(&a));
    }
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=1s",
        "reporting.critical_after=2s",
    ]));
    // acme: ann's laptop never backs up (red by now); acme-eu inherits:
    // bob's odd-named desktop, also red; beta keeps the 3-day defaults:
    // cy's device backs up (green), dan's is parked.
    let _a = server.enroll("acme", "ann", "ann-laptop").await;
    let _b = server.enroll("acme-eu", "bob", ODD).await;
    let c = server.enroll("beta", "cy", "cy-server").await;
    let d = server.enroll("beta", "dan", "dan-old").await;
    cli_ok(&server.cli(&["user", "add", "--org", "beta", "eve"]));
    cli_ok(&server.cli(&["device", "park", &d.device]));
    let body = block_bytes(3, 5000);
    let id = BlockId::of(&body);
    let s = c.open_session().await;
    assert_eq!(c.put_in(&s, &body).await.status, 201);
    assert_eq!(c.commit(&s, &id, &[id], 100.0).await.status, 201);
    tokio::time::sleep(Duration::from_millis(2200)).await;

    // The default order: worst first.
    let all = page(&server, &["device-status"]);
    assert_eq!(all.total, 4);
    assert_eq!(col(&all, "state"), ["critical", "critical", "ok", "parked"]);
    assert_eq!(
        col(&all, "reason"),
        [
            "never_backed_up",
            "never_backed_up",
            "ok",
            "never_backed_up"
        ]
    );
    assert_eq!(all.rows[2]["name"], "cy-server");
    assert_eq!(all.rows[2]["bytes_stored"], 5000);
    assert_eq!(all.rows[2]["backups"], 1);
    assert_eq!(all.rows[2]["percent_complete"], 100.0);
    // Filters: an org subtree, states, reasons.
    let acme = page(&server, &["device-status", "--org", "acme"]);
    assert_eq!(
        col(&acme, "org").into_iter().collect::<BTreeSet<_>>(),
        ["acme".to_string(), "acme-eu".to_string()].into()
    );
    let green = page(&server, &["device-status", "--state", "ok,parked"]);
    assert_eq!(col(&green, "name"), ["cy-server", "dan-old"]);
    let never = page(
        &server,
        &[
            "device-status",
            "--reason",
            "never_backed_up",
            "--org",
            "beta",
        ],
    );
    assert_eq!(col(&never, "name"), ["dan-old"]);
    // Sort by any column, either way.
    let asc = page(&server, &["device-status", "--sort", "name", "--asc"]);
    let mut names = col(&asc, "name");
    assert_eq!(names, {
        let mut s = names.clone();
        s.sort();
        s
    });
    let desc = page(&server, &["device-status", "--sort", "name", "--desc"]);
    names.reverse();
    assert_eq!(col(&desc, "name"), names);
    let by_bytes = page(
        &server,
        &["device-status", "--sort", "bytes_stored", "--desc"],
    );
    assert_eq!(by_bytes.rows[0]["name"], "cy-server");
    // Pages: a cursor, no row twice, none missed.
    let p1 = page(
        &server,
        &["device-status", "--sort", "name", "--limit", "3"],
    );
    assert_eq!(p1.rows.len(), 3);
    let next = p1.next_after.clone().expect("a next page");
    let p2 = page(
        &server,
        &[
            "device-status",
            "--sort",
            "name",
            "--limit",
            "3",
            "--after",
            &next,
        ],
    );
    assert_eq!(p2.rows.len(), 1);
    assert_eq!(p2.next_after, None);
    let mut joined = col(&p1, "device");
    joined.extend(col(&p2, "device"));
    assert_eq!(
        joined.iter().collect::<BTreeSet<_>>().len(),
        4,
        "{joined:?}"
    );
    // CSV: the odd name quoted and defused, every row, the header first.
    let csv = cli_ok(&server.cli(&[
        "report",
        "device-status",
        "--format",
        "csv",
        "--sort",
        "name",
    ]));
    let rows = parse_csv(&csv);
    assert_eq!(rows[0][..3], ["device", "name", "user"]);
    assert_eq!(rows.len(), 5);
    let odd = rows.iter().find(|r| r[2] == "bob").unwrap();
    assert_eq!(odd[1], format!("'{ODD}"));
    assert!(
        csv.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\""),
        "{csv}"
    );
    // One page as CSV follows the same rules.
    let one = cli_ok(&server.cli(&[
        "report",
        "device-status",
        "--format",
        "csv",
        "--sort",
        "name",
        "--limit",
        "10",
    ]));
    assert_eq!(parse_csv(&one), rows);
    // The table.
    let t = cli_ok(&server.cli(&["report", "device-status"]));
    assert!(
        t.contains("STATE") && t.contains("cy-server") && t.contains("critical"),
        "{t}"
    );

    // Orgs: own devices per state, users, bytes.
    let orgs = page(&server, &["orgs"]);
    assert_eq!(col(&orgs, "org"), ["acme", "acme-eu", "beta"]);
    let beta = &orgs.rows[2];
    assert_eq!(
        (
            &beta["devices"],
            &beta["ok"],
            &beta["parked"],
            &beta["users"],
            &beta["bytes_stored"]
        ),
        (&2.into(), &1.into(), &1.into(), &3.into(), &5000.into())
    );
    assert_eq!(orgs.rows[1]["parent"], "acme");
    assert_eq!(orgs.rows[1]["critical"], 1);
    // Users: the worst state; a user without devices has none.
    let users = page(&server, &["users", "--org", "beta", "--sort", "user"]);
    assert_eq!(col(&users, "user"), ["cy", "dan", "eve"]);
    assert_eq!(col(&users, "worst_state"), ["ok", "parked", "null"]);
    assert_eq!(users.rows[0]["bytes_stored"], 5000);

    // Scope: beta's org admin sees beta only, and not acme at all.
    let t = server.account_token("bea", "org-admin", Some("beta"));
    let out = cli_ok(&server.cli_as(Some(&t), &["report", "device-status", "--format", "json"]));
    let scoped: ReportPage = serde_json::from_str(&out).unwrap();
    assert_eq!(col(&scoped, "org"), ["beta", "beta"]);
    let out = server.cli_as(Some(&t), &["report", "orgs", "--org", "acme"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not_found"),
        "{out:?}"
    );
    let scoped_orgs: ReportPage = serde_json::from_str(&cli_ok(
        &server.cli_as(Some(&t), &["report", "orgs", "--format", "json"]),
    ))
    .unwrap();
    assert_eq!(col(&scoped_orgs, "org"), ["beta"]);

    // Bad input: clear errors.
    for (args, says) in [
        (
            vec!["report", "device-status", "--sort", "colour"],
            "is not a column of the device-status report",
        ),
        (
            vec!["report", "device-status", "--state", "red"],
            "is not a health state",
        ),
        (
            vec!["report", "users", "--reason", "lazy"],
            "is not a health reason",
        ),
        (
            vec!["report", "device-status", "--after", "zz"],
            "is not a report cursor",
        ),
    ] {
        let out = server.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("400 invalid_request") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}
