//! The route table: every agent, admin and ops route in one place, each with
//! its handler, who may call it and how large a body it takes.
//!
//! A row names a handler whose `#[utoipa::path]` attribute gives the method,
//! the path and the OpenAPI description of the operation; the row adds the
//! [`Access`] and the [`Limit`]. A row without a handler, an access or a
//! limit does not compile, and a handler not in the table is not served. The
//! router and the OpenAPI description are both built from this table, and a
//! test checks that every row is in the description.
//!
//! Every route runs [`crate::gate::gate`] first: authentication (`401`), the
//! role-level permission (`403`) or the archive's ownership (`404`, the same
//! for a foreign archive as for none), then the declared body limit against
//! `Content-Length` (`413` before the body is read). A path that matches with
//! the wrong method answers `405 method_not_allowed` with `Allow`.

use std::sync::Arc;

use axum::routing::MethodRouter;
use axum::Router;
use coffer_core::Permission;
use http::Method;
use utoipa::openapi::path::{PathItem, Paths};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use crate::app::App;
use crate::handlers::{admin, agent, ops};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (health, readiness, metrics, the OpenAPI description).
    Public,
    /// A device token; an `{archive}` in the path must be the device's.
    Device,
    /// What only reads: a device token, or a restore token issued for the
    /// device (administrator restore); the archive is checked the same way.
    Reader,
    /// An admin token whose role holds the permission.
    Admin(Permission),
}

/// The largest request body a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Small JSON (and bodyless) routes: 1 MiB.
    Json,
    /// A commit's block list (`http.max_json_body_bytes`).
    BlockList,
    /// `blocks/missing`: room for `limits.max_missing_ids` ids.
    Missing,
    /// `blocks/fetch`: room for its most ids.
    Fetch,
    /// `blocks/bundle`: a bundle's most bytes.
    Bundle,
    /// A block upload (`limits.max_block_bytes`, checked by the core from
    /// `Content-Length` and while streaming, as `block_too_large`).
    Block,
}

/// The small-JSON limit.
pub(crate) const JSON_LIMIT: usize = 1 << 20;
/// `blocks/fetch`: at most `BUNDLE_MAX_BLOCKS` ids of 64 hex characters,
/// with generous room for whitespace.
pub(crate) const FETCH_LIMIT: usize = coffer_types::wire::BUNDLE_MAX_BLOCKS * 128;

type Schemas = Vec<(String, RefOr<Schema>)>;

/// One row of the table, with what the handler's attribute declares.
pub(crate) struct Route {
    pub(crate) id: &'static str,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) access: Access,
    pub(crate) limit: Limit,
    pub(crate) paths: Paths,
    pub(crate) schemas: Schemas,
    handler: MethodRouter<Arc<App>>,
}

fn method_of(item: &PathItem) -> Option<(Method, &utoipa::openapi::path::Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
    ]
    .into_iter()
    .find_map(|(m, op)| op.as_ref().map(|op| (m, op)))
}

impl Route {
    fn new(
        (schemas, paths, handler): (Schemas, Paths, MethodRouter<Arc<App>>),
        access: Access,
        limit: Limit,
    ) -> Self {
        let (path, item) = paths
            .paths
            .iter()
            .next()
            .expect("a routed handler has a path");
        let (method, op) = method_of(item).expect("a routed handler has a method");
        // Ids label metrics on every request; the table is built once per
        // server, so they are kept for the process's life.
        let id: &'static str = Box::leak(
            op.operation_id
                .clone()
                .expect("utoipa names every operation")
                .into_boxed_str(),
        );
        Self {
            id,
            method,
            path: path.clone(),
            access,
            limit,
            handler,
            schemas,
            paths: paths.clone(),
        }
    }
}

/// `handler => access, limit;` rows into [`Route`]s.
macro_rules! table {
    ($( $($h:ident)::+ => $access:expr, $limit:expr; )*) => {
        vec![ $( Route::new(utoipa_axum::routes!($($h)::+), $access, $limit), )* ]
    };
}

/// Every route the server serves.
pub(crate) fn table() -> Vec<Route> {
    use Access::{Admin, Device, Public, Reader};
    use Limit::*;
    use Permission::*;
    table![
        // ---- ops ----
        ops::healthz => Public, Json;
        ops::readyz => Public, Json;
        ops::metrics => Public, Json;
        ops::openapi => Public, Json;
        // ---- the agent protocol ----
        agent::whoami => Reader, Json;
        agent::device_settings => Reader, Json;
        agent::missing_blocks => Device, Missing;
        agent::put_bundle => Device, Bundle;
        agent::fetch_blocks => Reader, Fetch;
        agent::put_block => Device, Block;
        agent::get_block => Reader, Json;
        agent::head_block => Reader, Json;
        agent::open_session => Device, Json;
        agent::get_session => Device, Json;
        agent::abort_session => Device, Json;
        agent::delete_session => Device, Json;
        agent::progress => Device, Json;
        agent::commit => Device, BlockList;
        agent::list_backups => Reader, Json;
        agent::get_backup => Reader, Json;
        agent::set_ref => Device, Json;
        agent::get_ref => Reader, Json;
        agent::put_escrow => Device, Json;
        agent::get_escrow => Reader, Json;
        // ---- the admin API ----
        admin::whoami => Admin(ReadInventory), Json;
        admin::orgs::list => Admin(ReadInventory), Json;
        admin::orgs::create => Admin(ManageInventory), Json;
        admin::orgs::get_settings => Admin(ReadInventory), Json;
        admin::orgs::set_settings => Admin(ManageInventory), Json;
        admin::orgs::set_inherit => Admin(ManageInventory), Json;
        admin::users::list => Admin(ReadInventory), Json;
        admin::users::add => Admin(ManageInventory), Json;
        admin::devices::list => Admin(ReadInventory), Json;
        admin::devices::enroll => Admin(ManageInventory), Json;
        admin::devices::get => Admin(ReadInventory), Json;
        admin::devices::revoke => Admin(ManageInventory), Json;
        admin::devices::rotate => Admin(ManageInventory), Json;
        admin::devices::restore_token => Admin(RestoreArchive), Json;
        admin::devices::park => Admin(ManageInventory), Json;
        admin::devices::unpark => Admin(ManageInventory), Json;
        admin::devices::alerts => Admin(ReadInventory), Json;
        admin::devices::deactivate => Admin(ManageInventory), Json;
        admin::devices::reactivate => Admin(ManageInventory), Json;
        admin::devices::purge => Admin(ManageServer), Json;
        admin::users::deactivate => Admin(ManageInventory), Json;
        admin::holds::list_policies => Admin(ReadHolds), Json;
        admin::holds::create_policy => Admin(ManageHolds), Json;
        admin::holds::list_matters => Admin(ReadHolds), Json;
        admin::holds::create_matter => Admin(ManageHolds), Json;
        admin::holds::get_matter => Admin(ReadHolds), Json;
        admin::holds::close_matter => Admin(ManageHolds), Json;
        admin::holds::list_custodians => Admin(ReadHolds), Json;
        admin::holds::add_custodian => Admin(ManageHolds), Json;
        admin::holds::release_custodian => Admin(ManageHolds), Json;
        admin::retention::plan => Admin(ReadInventory), Json;
        admin::retention::run => Admin(ManageServer), Json;
        admin::retention::gc_status => Admin(ReadServer), Json;
        admin::retention::gc_run => Admin(ReadServer), Json;
        admin::retention::clock => Admin(ReadServer), Json;
        admin::retention::clock_accept => Admin(ManageServer), Json;
        admin::reports::get => Admin(ReadInventory), Json;
        admin::accounts::list => Admin(ReadAccounts), Json;
        admin::accounts::create => Admin(ManageAccounts), Json;
        admin::accounts::get => Admin(ReadAccounts), Json;
        admin::accounts::disable => Admin(ManageAccounts), Json;
        admin::accounts::enable => Admin(ManageAccounts), Json;
        admin::accounts::delete => Admin(ManageAccounts), Json;
        admin::tokens::list => Admin(ReadAccounts), Json;
        admin::tokens::create => Admin(ManageAccounts), Json;
        admin::tokens::revoke => Admin(ManageAccounts), Json;
        admin::audit::list => Admin(ReadAudit), Json;
        admin::audit::export => Admin(ReadAudit), Json;
        admin::audit::verify => Admin(ReadAudit), Json;
        admin::workers::list => Admin(ReadServer), Json;
        admin::workers::scrub_status => Admin(ReadServer), Json;
        admin::workers::scrub_run => Admin(ManageServer), Json;
        admin::workers::mail_test => Admin(ManageServer), Json;
        admin::plugins::list => Admin(ReadServer), Json;
        admin::plugins::enable => Admin(ManageServer), Json;
        admin::plugins::disable => Admin(ManageServer), Json;
        admin::plugins::reload => Admin(ManageServer), Json;
        admin::plugins::report => Admin(ReadInventory), Json;
        admin::plugins::retention_plan => Admin(ReadInventory), Json;
    ]
}

/// What the gate needs to know of the route a request matched.
#[derive(Debug, Clone)]
pub(crate) struct RouteMeta {
    pub(crate) id: &'static str,
    /// `POST /admin/v1/orgs`: the route in messages and audit entries.
    pub(crate) label: String,
    pub(crate) access: Access,
    pub(crate) limit: Limit,
}

/// The router for `app`, and the routes it serves (for the OpenAPI
/// description).
pub(crate) fn router(app: &Arc<App>, routes: Vec<Route>) -> Router {
    let mut router: Router<Arc<App>> = Router::new();
    for r in routes {
        let meta = Arc::new(RouteMeta {
            id: r.id,
            label: format!("{} {}", r.method, r.path),
            access: r.access,
            limit: r.limit,
        });
        let gated = r.handler.route_layer(axum::middleware::from_fn_with_state(
            (app.clone(), meta),
            crate::gate::gate,
        ));
        router = router.route(&r.path, gated);
    }
    router
        .method_not_allowed_fallback(crate::gate::method_not_allowed)
        .fallback(crate::gate::not_found)
        .with_state(app.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the table is in the OpenAPI description, under its
    /// method and path, with each path segment documented as a parameter —
    /// and the description has nothing the table does not serve.
    #[test]
    fn the_openapi_description_covers_the_route_table() {
        let routes = table();
        let doc = crate::openapi::document(&routes);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let mut documented = 0;
        for r in &routes {
            let op = &json["paths"][&r.path][r.method.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{} {} is missing from the OpenAPI description",
                r.method,
                r.path
            );
            assert_eq!(op["operationId"], r.id);
            for seg in r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let params = op["parameters"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                assert!(
                    params.iter().any(|p| p["name"] == seg && p["in"] == "path"),
                    "{} {}: the path parameter {seg} is not documented",
                    r.method,
                    r.path
                );
            }
            match r.access {
                Access::Public => assert!(op.get("security").is_none(), "{}", r.id),
                Access::Admin(perm) => {
                    assert_eq!(op["x-permission"], perm.as_str(), "{}", r.id);
                    assert!(
                        op["security"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|x| x.get("admin_token").is_some())),
                        "{}: security admin_token is not documented",
                        r.id
                    );
                }
                Access::Device | Access::Reader => {
                    let schemes: &[&str] = if r.access == Access::Device {
                        &["device_token"]
                    } else {
                        &["device_token", "restore_token"]
                    };
                    for scheme in schemes {
                        assert!(
                            op["security"]
                                .as_array()
                                .is_some_and(|s| s.iter().any(|x| x.get(scheme).is_some())),
                            "{}: security {scheme} is not documented",
                            r.id
                        );
                    }
                }
            }
            documented += 1;
        }
        let ops_in_doc: usize = json["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            ops_in_doc, documented,
            "the description has operations the table does not serve"
        );
        // Ids are unique: they are the metrics' route labels.
        let mut ids: Vec<&str> = routes.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), routes.len());
    }

    /// A restore token reaches only what reads: the routes it may call are
    /// these, and none of them stores or changes anything.
    #[test]
    fn restore_tokens_reach_only_the_reading_routes() {
        let mut readers: Vec<&str> = table()
            .iter()
            .filter(|r| r.access == Access::Reader)
            .map(|r| r.id)
            .collect();
        readers.sort();
        assert_eq!(
            readers,
            [
                "device_settings",
                "fetch_blocks",
                "get_backup",
                "get_block",
                "get_escrow",
                "get_ref",
                "head_block",
                "list_backups",
                "whoami"
            ]
        );
        for r in table().iter().filter(|r| r.access == Access::Reader) {
            // fetch is a POST only for its id list.
            assert!(
                r.method == Method::GET || r.method == Method::HEAD || r.id == "fetch_blocks",
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn the_large_limits_are_only_where_the_issue_allows() {
        for r in table() {
            let large = !matches!(r.limit, Limit::Json);
            let allowed = [
                "missing_blocks",
                "commit",
                "fetch_blocks",
                "put_bundle",
                "put_block",
            ];
            assert_eq!(large, allowed.contains(&r.id), "{}", r.id);
        }
    }
}
