//! Roles and scopes through the real server: what each role may and may not
//! do, tokens that expire, and device and admin tokens kept apart.

use std::time::Duration;

use bytes::Bytes;
use coffer_client::{paths, Client, Error};
use coffer_types::wire::{AddUser, CreateOrg, DeviceList, EnrollDevice};
use coffer_types::{ErrorCode, Name};
use http::Method;

use crate::harness::*;

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: coffer_client::Result<T>, status: u16, says: &str) {
    match r {
        Err(Error::Api {
            status: s, message, ..
        }) => {
            assert_eq!(s, status, "{message}");
            assert!(message.contains(says), "{message:?} does not say {says:?}");
        }
        other => panic!("expected a {status}, got {other:?}"),
    }
}

/// acme → acme-eu → acme-eu-sales, and beta; a device in acme and one in
/// acme-eu-sales.
async fn tree(server: &TestServer) -> (Agent, Agent) {
    let admin = server.admin_api().await;
    for (org, parent) in [
        ("acme", None),
        ("acme-eu", Some("acme")),
        ("acme-eu-sales", Some("acme-eu")),
        ("beta", None),
    ] {
        admin
            .create_org(&CreateOrg {
                name: n(org),
                parent: parent.map(n),
            })
            .await
            .unwrap();
    }
    let top = server.enroll("acme", "bob", "bob-laptop").await;
    let eu = server.enroll("acme-eu-sales", "ann", "ann-laptop").await;
    (top, eu)
}

async fn as_token(server: &TestServer, token: &str) -> Client {
    server.api().await.with_token(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_admin_works_inside_its_subtree_only() {
    let server = TestServer::h2c().await;
    let (top, eu) = tree(&server).await;
    let token = server.account_token("eve", "org-admin", Some("acme-eu"));
    let eve = as_token(&server, &token).await;

    let who = eve.admin_whoami().await.unwrap();
    assert_eq!(
        (who.role.as_str(), who.org),
        ("org-admin", Some(n("acme-eu")))
    );
    let devices = eve.list_devices().await.unwrap().devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device.as_str(), eu.device);
    let orgs: Vec<String> = eve
        .list_orgs()
        .await
        .unwrap()
        .orgs
        .iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(orgs, ["acme-eu", "acme-eu-sales"]);

    // A device of acme, above it: exactly the 404 of a device that does not
    // exist.
    let outside = eve.device(&top.device).await.unwrap_err();
    let absent = eve.device("dv_0000").await.unwrap_err();
    assert_eq!((outside.status(), absent.status()), (Some(404), Some(404)));
    assert_eq!(
        outside.to_string().replace(&top.device, "X"),
        absent.to_string().replace("dv_0000", "X")
    );
    refused(eve.revoke_device(&top.device).await, 404, "does not exist");
    refused(
        eve.add_user(&AddUser {
            org: n("beta"),
            name: n("x"),
        })
        .await,
        404,
        "org beta does not exist",
    );
    // A top-level org needs the admin role.
    refused(
        eve.create_org(&CreateOrg {
            name: n("gamma"),
            parent: None,
        })
        .await,
        403,
        "needs the admin role",
    );
    // Inside its subtree it may do everything.
    eve.create_org(&CreateOrg {
        name: n("acme-eu-ops"),
        parent: Some(n("acme-eu")),
    })
    .await
    .unwrap();
    eve.add_user(&AddUser {
        org: n("acme-eu-ops"),
        name: n("olga"),
    })
    .await
    .unwrap();
    eve.enroll_device(&EnrollDevice {
        org: n("acme-eu-ops"),
        user: n("olga"),
        name: "olga-pc".into(),
        os: None,
    })
    .await
    .unwrap();
    eve.rotate_device(&eu.device).await.unwrap();
    // Server-wide things are not its business: 403 naming the role.
    refused(
        eve.workers().await,
        403,
        "needs the admin or read-only role",
    );
    refused(eve.audit_verify().await, 403, "admin or legal-hold-admin");
    // The admin still sees everything.
    let all: DeviceList = server.admin_api().await.list_devices().await.unwrap();
    assert_eq!(all.devices.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_gets_403_on_every_write_of_the_api() {
    let server = TestServer::h2c().await;
    let (top, _) = tree(&server).await;
    let token = server.account_token("rita", "read-only", None);
    let rita = as_token(&server, &token).await;
    assert_eq!(rita.list_devices().await.unwrap().devices.len(), 2);
    assert!(rita.workers().await.is_ok());

    // Every operation of the admin API that changes something, from the
    // served description: each refused with 403 before its body is read.
    let doc = server.api().await.openapi().await.unwrap();
    let mut writes = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/admin/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let reads = method == Method::GET || op["operationId"] == "admin_run_report";
            if reads {
                continue;
            }
            let concrete = path
                .replace("{device}", &top.device)
                .replace("{account}", "admin")
                .replace("{token}", "tk_0")
                .replace("{plugin}", "p");
            let r = rita
                .raw()
                .send(
                    method.clone(),
                    &concrete,
                    &[("content-type", "application/json")],
                    Bytes::from_static(b"{}"),
                )
                .await
                .unwrap();
            assert_refused(&r, 403, "forbidden", "needs the admin");
            writes += 1;
        }
    }
    assert!(writes >= 14, "only {writes} writes in the description");
    // And through the typed client, on real objects.
    refused(
        rita.revoke_device(&top.device).await,
        403,
        "admin or org-admin",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_accounts_can_be_disabled() {
    let server = TestServer::h2c().await;
    server.enroll("acme", "ann", "laptop").await;
    let admin = server.admin_api().await;
    cli_ok(&server.cli(&["account", "create", "tom", "--role", "read-only"]));
    let out = cli_ok(&server.cli(&[
        "token",
        "create",
        "--account",
        "tom",
        "--expires",
        "1s",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for field in ["id", "token", "account", "expires_at"] {
        assert!(!v[field].is_null(), "--json has {field}: {v}");
    }
    let tom = as_token(&server, v["token"].as_str().unwrap()).await;
    assert!(tom.list_devices().await.is_ok());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    refused(tom.list_devices().await, 401, "expired");

    let token = server.account_token("una", "read-only", None);
    let una = as_token(&server, &token).await;
    assert!(una.list_devices().await.is_ok());
    admin.disable_account("una").await.unwrap();
    refused(una.list_devices().await, 401, "disabled");
    admin.enable_account("una").await.unwrap();
    assert!(una.list_devices().await.is_ok());
    // Revoked: unknown from then on.
    let id = admin.list_tokens(Some("una")).await.unwrap().tokens[0]
        .id
        .clone();
    admin.revoke_token(id.as_str()).await.unwrap();
    refused(una.list_devices().await, 401, "token");
    // The list shows states, never a token.
    let out = cli_ok(&server.cli(&["token", "list", "--json"]));
    assert!(!out.contains("cfa_"), "{out}");
    assert!(
        out.contains("\"expired\"") && out.contains("\"revoked\""),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legal_hold_admins_read_inventory_and_the_audit_log_and_change_nothing() {
    let server = TestServer::h2c().await;
    let (top, _) = tree(&server).await;
    let token = server.account_token("lena", "legal-hold-admin", None);
    let lena = as_token(&server, &token).await;
    assert_eq!(lena.list_devices().await.unwrap().devices.len(), 2);
    assert!(lena.audit_verify().await.unwrap().ok);
    refused(
        lena.revoke_device(&top.device).await,
        403,
        "admin or org-admin",
    );
    refused(lena.list_accounts().await, 403, "role");
    // A scope is refused for the unscoped roles.
    let out = server.cli(&[
        "account",
        "create",
        "x",
        "--role",
        "legal-hold-admin",
        "--org",
        "acme",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not scoped"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_and_admin_tokens_stay_on_their_own_side() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    // A device token on the admin API, an admin token on the agent protocol.
    let r = agent.client.get(&paths::devices()).await.unwrap();
    assert_refused(&r, 401, "unauthorized", "token");
    let r = server
        .admin()
        .await
        .get(&paths::backups(&agent.archive))
        .await
        .unwrap();
    assert_refused(&r, 401, "unauthorized", "token");
    // The bootstrap admin is an account like the others.
    let who = server.admin_api().await.admin_whoami().await.unwrap();
    assert_eq!(
        (who.account.as_str(), who.role.as_str()),
        ("admin", "admin")
    );
    let e = server
        .admin_api()
        .await
        .delete_account("admin")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
}
