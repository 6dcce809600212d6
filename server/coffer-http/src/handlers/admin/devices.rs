//! Devices: enrollment, the list with health facts, token revocation and
//! rotation.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{
    AlertList, DeviceInfo, DeviceList, DeviceToken, EnrollDevice, ErrorBody, IssueRestoreToken,
    RestoreToken,
};
use coffer_types::Name;
use http::StatusCode;

use crate::app::App;
use crate::extract::{Gated, Json, OptionalJson, Query, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// The devices in the caller's scope, with their archives' facts.
#[utoipa::path(get, path = "/admin/v1/devices", tag = "devices", operation_id = "admin_list_devices",
    security(("admin_token" = [])),
    responses((status = 200, body = DeviceList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &DeviceList {
            devices: app.core.devices(&p).await?,
        },
    ))
}

/// Enroll a device for a user: its id, archive and token (shown once).
#[utoipa::path(post, path = "/admin/v1/devices", tag = "devices", operation_id = "admin_enroll_device",
    security(("admin_token" = [])),
    request_body = EnrollDevice,
    responses((status = 201, body = DeviceToken),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn enroll(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<EnrollDevice>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.enroll_device(&p, b).await?,
    ))
}

/// One device.
#[utoipa::path(get, path = "/admin/v1/devices/{device}", tag = "devices", operation_id = "admin_get_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.device(&p, &device).await?))
}

/// Revoke a device's token: it can no longer reach its archive (its data
/// stays).
#[utoipa::path(post, path = "/admin/v1/devices/{device}/revoke", tag = "devices", operation_id = "admin_revoke_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.revoke_device(&p, &device).await?,
    ))
}

/// Issue a new token for a device; the old one stops working.
#[utoipa::path(post, path = "/admin/v1/devices/{device}/rotate", tag = "devices", operation_id = "admin_rotate_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceToken),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn rotate(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.rotate_device_token(&p, &device).await?,
    ))
}

/// Issue a restore token for a device (administrator restore): it lists and
/// reads the device's archive, never writes, until it expires. Needs
/// `security.admin_restore = on` for the device's org, standard archive
/// security and an escrowed key.
#[utoipa::path(post, path = "/admin/v1/devices/{device}/restore-token", tag = "devices",
    operation_id = "admin_device_restore_token",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    request_body = IssueRestoreToken,
    responses((status = 201, body = RestoreToken),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn restore_token(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
    OptionalJson(b): OptionalJson<IssueRestoreToken>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core
            .issue_restore_token(&p, &device, &b.unwrap_or_default())
            .await?,
    ))
}

/// Park a device (on leave, retired): it shows as `parked` and raises no
/// alerts until unparked.
#[utoipa::path(post, path = "/admin/v1/devices/{device}/park", tag = "devices", operation_id = "admin_park_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn park(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.park_device(&p, &device, true).await?,
    ))
}

/// Unpark a device: its health counts again.
#[utoipa::path(post, path = "/admin/v1/devices/{device}/unpark", tag = "devices", operation_id = "admin_unpark_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn unpark(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.park_device(&p, &device, false).await?,
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    /// Alerts after this sequence number (the previous page's
    /// `next_after`).
    after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// Health alert transitions in the caller's scope, oldest first: each
/// device's change of alert level (warning, critical, recovery), recorded
/// once.
#[utoipa::path(get, path = "/admin/v1/alerts", tag = "devices", operation_id = "admin_list_alerts",
    security(("admin_token" = [])),
    params(AlertsQuery),
    responses((status = 200, body = AlertList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn alerts(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Query(q): Query<AlertsQuery>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core
            .alerts(&p, q.after.unwrap_or(0), q.limit.unwrap_or(100))
            .await?,
    ))
}

/// Deactivate a device: it may not back up, and its archive enters cold
/// storage for the org's `retention.cold_storage`.
#[utoipa::path(post, path = "/admin/v1/devices/{device}/deactivate", tag = "devices", operation_id = "admin_deactivate_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn deactivate(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.deactivate_device(&p, &device).await?,
    ))
}

/// Bring a device back from cold storage, its archive intact.
#[utoipa::path(post, path = "/admin/v1/devices/{device}/reactivate", tag = "devices", operation_id = "admin_reactivate_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn reactivate(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.reactivate_device(&p, &device).await?,
    ))
}

/// Purge a deactivated device's archive now (refused, `409 hold_active`,
/// while a legal hold protects it).
#[utoipa::path(post, path = "/admin/v1/devices/{device}/purge", tag = "devices", operation_id = "admin_purge_device",
    security(("admin_token" = [])),
    params(("device" = String, Path, description = "the device id")),
    request_body = coffer_types::wire::Reason,
    responses((status = 200, body = DeviceInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn purge(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(device): Seg<Name>,
    Json(b): Json<coffer_types::wire::Reason>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.purge_device(&p, &device, &b.reason).await?,
    ))
}
