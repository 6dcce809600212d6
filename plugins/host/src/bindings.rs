//! Host bindings of the contract's worlds, for every version the host
//! serves: the current one from `wit/` (`coffer:plugin@0.3.0`) and the
//! frozen `wit/v0.1.0/` and `wit/v0.2.0/` in [`v0_1`] and [`v0_2`].
//!
//! In each version, `integration` generates the shared interfaces (types,
//! log, kv, http-client); the other worlds reuse them with `with`, so one
//! Rust type stands for each WIT type whichever world a plugin implements.

macro_rules! worlds {
    ($path:literal) => {
        pub mod integration {
            wasmtime::component::bindgen!({
                world: "integration",
                path: $path,
                imports: {
                    "coffer:plugin/http-client.send": async | trappable,
                    default: trappable,
                },
                exports: { default: async },
                additional_derives: [serde::Serialize, serde::Deserialize],
            });
        }

        pub mod reporter {
            wasmtime::component::bindgen!({
                world: "reporter",
                path: $path,
                imports: { default: trappable },
                exports: { default: async },
                additional_derives: [serde::Serialize, serde::Deserialize],
                with: {
                    "coffer:plugin/types": super::integration::coffer::plugin::types,
                    "coffer:plugin/log": super::integration::coffer::plugin::log,
                    "coffer:plugin/kv": super::integration::coffer::plugin::kv,
                },
            });
        }

        pub mod retention {
            wasmtime::component::bindgen!({
                world: "retention",
                path: $path,
                imports: { default: trappable },
                exports: { default: async },
                additional_derives: [serde::Serialize, serde::Deserialize],
                with: {
                    "coffer:plugin/types": super::integration::coffer::plugin::types,
                    "coffer:plugin/log": super::integration::coffer::plugin::log,
                },
            });
        }

        pub use integration::coffer::plugin::http_client;
        pub use integration::coffer::plugin::kv;
        pub use integration::coffer::plugin::log;
        pub use integration::coffer::plugin::types;
        pub use reporter::coffer::plugin::inventory;
    };
}

worlds!("../../wit");

/// `coffer:plugin@0.1.0`, for plugins built before 0.2.0. The host works in
/// the current types and converts at the edge (`crate::compat`).
pub mod v0_1 {
    worlds!("../../wit/v0.1.0");
}

/// `coffer:plugin@0.2.0`, for plugins built before 0.3.0.
pub mod v0_2 {
    worlds!("../../wit/v0.2.0");
}
