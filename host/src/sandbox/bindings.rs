//! Host-side bindings for the `loader` world in `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "loader",
    additional_derives: [PartialEq, Eq],
});

pub use pixell::apkg::host_installer;
pub use pixell::apkg::host_log;
pub use pixell::apkg::types;
