//! The vocabulary every layer speaks: configuration, errors and results.
//! Plain data that depends on nothing else in the crate, so a mechanism can
//! return the API's error without reaching up a layer.

pub mod config;
pub mod error;
pub mod lifecycle;
pub mod package;
pub mod process;
pub mod spawn;
