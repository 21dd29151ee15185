//! The vocabulary every layer speaks: configuration, errors and results.
//! Plain data that depends on nothing else in the crate, so a mechanism can
//! return the API's error without reaching up a layer.

pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod lifecycle;
pub(crate) mod package;
pub(crate) mod process;
pub(crate) mod registry;
pub(crate) mod spawn;
pub(crate) mod trust;
