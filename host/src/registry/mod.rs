//! OCI registries: references, credentials, the distribution protocol, and
//! how a bundle is laid out as an artifact.

pub(crate) mod artifact;
pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod reference;
