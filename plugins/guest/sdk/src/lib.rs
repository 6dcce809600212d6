//! Write Coffer plugins in Rust.
//!
//! Enable the feature of the world your plugin implements (`reporter`,
//! `retention` or `integration`), implement its `Guest` trait, and export it:
//!
//! ```ignore
//! use coffer_plugin_sdk::retention::{export, Guest, Plan, Archive, BackupSummary, CallContext, PluginError};
//! struct Mine;
//! impl Guest for Mine {
//!     fn plan(ctx: CallContext, archive: Archive, backups: Vec<BackupSummary>) -> Result<Plan, PluginError> {
//!         Ok(Plan { expire: vec![] })
//!     }
//! }
//! export!(Mine);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`: the output is a
//! component Coffer loads. The contract is `wit/` at the repository's root
//! (`coffer:plugin@0.3.0`); `docs/plugins.md` walks through it.
//!
//! The features `contract-0-1` and `contract-0-2` build against the frozen
//! `wit/v0.1.0/` or `wit/v0.2.0/` instead, for a plugin that must load on
//! servers that serve only those (it then never sees the events added
//! since). `contract-0-1` wins if both are on.

/// The contract version these bindings were generated from.
#[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
pub const CONTRACT: &str = "0.3.0";
#[cfg(all(feature = "contract-0-2", not(feature = "contract-0-1")))]
pub const CONTRACT: &str = "0.2.0";
#[cfg(feature = "contract-0-1")]
pub const CONTRACT: &str = "0.1.0";

/// The bindings of one world, from `wit/` or, with the feature
/// `contract-0-1` or `contract-0-2`, from `wit/v0.1.0/` or `wit/v0.2.0/`.
macro_rules! world {
    ($world:literal, $module:literal) => {
        #[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
        wit_bindgen::generate!({
            world: $world,
            path: "../../../wit",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: $module,
        });
        #[cfg(all(feature = "contract-0-2", not(feature = "contract-0-1")))]
        wit_bindgen::generate!({
            world: $world,
            path: "../../../wit/v0.2.0",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: $module,
        });
        #[cfg(feature = "contract-0-1")]
        wit_bindgen::generate!({
            world: $world,
            path: "../../../wit/v0.1.0",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: $module,
        });
    };
}

#[cfg(feature = "retention")]
// Generated code: the canonical ABI flattens records into many arguments.
#[allow(clippy::too_many_arguments)]
pub mod retention {
    //! The retention world: propose which backups of an archive to expire.
    world!("retention", "coffer_plugin_sdk::retention");
    pub use self::coffer::plugin::log;
    pub use self::coffer::plugin::types::*;
    crate::helpers!();
}

#[cfg(feature = "reporter")]
// Generated code: the canonical ABI flattens records into many arguments.
#[allow(clippy::too_many_arguments)]
pub mod reporter {
    //! The reporter world: build a report from the inventory the host lends.
    world!("reporter", "coffer_plugin_sdk::reporter");
    pub use self::coffer::plugin::types::*;
    pub use self::coffer::plugin::{inventory, kv, log};
    crate::helpers!();
}

#[cfg(feature = "integration")]
// Generated code: the canonical ABI flattens records into many arguments.
#[allow(clippy::too_many_arguments)]
pub mod integration {
    //! The integration world: receive batches of events, call out over HTTP.
    world!("integration", "coffer_plugin_sdk::integration");
    pub use self::coffer::plugin::types::*;
    pub use self::coffer::plugin::{http_client, kv, log};
    crate::helpers!();
}

/// Helpers shared by every world's module.
#[doc(hidden)]
#[macro_export]
macro_rules! helpers {
    () => {
        impl PluginError {
            /// A failure with a short machine-readable code.
            pub fn new(code: &str, message: impl Into<String>) -> Self {
                Self {
                    code: code.to_string(),
                    message: message.into(),
                }
            }
        }

        impl CallContext {
            /// The operator's setting `key` (after the manifest's defaults).
            pub fn config(&self, key: &str) -> Option<&str> {
                self.config
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            }

            /// A numeric setting, or a clear error naming it.
            pub fn config_u64(&self, key: &str, default: u64) -> Result<u64, PluginError> {
                match self.config(key) {
                    None => Ok(default),
                    Some(v) => v.parse().map_err(|_| {
                        PluginError::new(
                            "bad_config",
                            format!("setting {key} = {v:?} is not a number"),
                        )
                    }),
                }
            }
        }

        /// Log at info level.
        pub fn info(message: &str) {
            log::log(log::Level::Info, message);
        }

        /// Log at warn level.
        pub fn warn(message: &str) {
            log::log(log::Level::Warn, message);
        }
    };
}
