//! Trust in a package's origin: minisign signatures over its bytes, checked
//! against the keys the loader trusts before the sandbox reads a byte.

pub(crate) mod signature;
