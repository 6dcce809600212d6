//! Host bindings of the three worlds of `wit/` (`coffer:plugin@0.1.0`).
//!
//! `integration` generates the shared interfaces (types, log, kv,
//! http-client); the other worlds reuse them with `with`, so one Rust type
//! stands for each WIT type whichever world a plugin implements.

pub mod integration {
    wasmtime::component::bindgen!({
        world: "integration",
        path: "../../wit",
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
        path: "../../wit",
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
        path: "../../wit",
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
