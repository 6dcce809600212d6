//! The handlers, by area: `ops` (health, readiness, metrics, the OpenAPI
//! description), `agent` (the agent protocol, `/v1`) and `admin` (the admin
//! API, `/admin/v1`, one module per kind of object). Each parses the
//! request, calls the core and answers; what may be called by whom is the
//! route table's and the core's business, not theirs.

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod ops;

/// The description of every error answer, for the OpenAPI attributes.
pub(crate) const ERROR: &str =
    "an error: `{\"error\": {\"code\", \"message\", \"retryable\"}}`, the code says which";
