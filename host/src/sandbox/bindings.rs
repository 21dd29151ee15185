//! Host-side bindings for the `loader` world in `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "loader",
    additional_derives: [PartialEq, Eq],
});

pub(crate) use pixell::apkg::host_copy;
pub(crate) use pixell::apkg::host_installer;
pub(crate) use pixell::apkg::host_log;
pub(crate) use pixell::apkg::types;
