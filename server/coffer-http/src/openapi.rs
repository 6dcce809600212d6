//! The OpenAPI 3.1 description of the agent and admin APIs, assembled from
//! the route table (each handler's `#[utoipa::path]`), served at
//! `/admin/v1/openapi.json`.

use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::Paths;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Tag};

use crate::routes::{Access, Route};

/// The description of `routes`.
pub(crate) fn document(routes: &[Route]) -> OpenApi {
    let mut paths = Paths::new();
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "device_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A device token (`cfd_…`), from enrollment"))
                    .build(),
            ),
        )
        .security_scheme(
            "restore_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A restore token (`cfr_…`) from `coffer admin device restore-token`: \
                         lists and reads one archive until it expires, never writes",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin API token (`cfa_…`) of an account; its role decides what it may do",
                    ))
                    .build(),
            ),
        );
    for r in routes {
        let mut p = r.paths.clone();
        // Each admin operation says which permission its caller's role
        // needs (`x-permission`; docs/admin.md has the role matrix).
        if let Access::Admin(perm) = r.access {
            for item in p.paths.values_mut() {
                for op in [
                    &mut item.get,
                    &mut item.put,
                    &mut item.post,
                    &mut item.patch,
                    &mut item.delete,
                ]
                .into_iter()
                .flatten()
                {
                    let ext = ExtensionsBuilder::new()
                        .add("x-permission", perm.as_str())
                        .build();
                    op.extensions
                        .get_or_insert_with(Default::default)
                        .merge(ext);
                }
            }
        }
        paths.merge(p);
        for (name, schema) in &r.schemas {
            components = components.schema(name.clone(), schema.clone());
        }
    }
    let tag = |name: &str, description: &str| {
        let mut t = Tag::new(name);
        t.description = Some(description.to_string());
        t
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Coffer")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The agent protocol (`/v1`, device tokens) and the admin API (`/admin/v1`, \
                     admin tokens) of a Coffer backup destination server. Errors are \
                     `{\"error\": {\"code\", \"message\", \"retryable\"}}` with the status the \
                     code maps to. See docs/protocol.md and docs/admin.md.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .tags(Some(vec![
            tag(
                "agent",
                "The agent protocol: blocks, sessions, commits, backups",
            ),
            tag("orgs", "Organizations"),
            tag("users", "Users"),
            tag("devices", "Devices and their health facts"),
            tag(
                "holds",
                "Legal hold: preservation policies, matters, custodians",
            ),
            tag(
                "retention",
                "Retention, garbage collection and the compliance clock",
            ),
            tag("accounts", "Admin accounts and roles"),
            tag("tokens", "Admin API tokens"),
            tag("audit", "The hash-chained audit log"),
            tag("workers", "Background workers"),
            tag("plugins", "WebAssembly plugins"),
            tag("admin", "The caller"),
            tag("ops", "Health, readiness, metrics, this description"),
        ]))
        .build()
}
