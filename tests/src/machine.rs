//! What the tests know of the machine they run on, never asked of the loader.

/// Whether the loader must give each step and agent a pids cgroup here:
/// then forking past its cap fails and every process of it dies with it,
/// with or without the sandbox. Taken from what the test knows of the machine,
/// never from the loader: as root (as CI runs) the loader may create one, so
/// the test requires it; otherwise it expects none, unless
/// `PAR_TEST_PIDS_CGROUP=1` says this user's cgroup is delegated (or `=0`
/// that a root without a writable cgroup tree has none).
pub fn pids_cgroups() -> bool {
    static EXPECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EXPECTED.get_or_init(|| match std::env::var("PAR_TEST_PIDS_CGROUP").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ if rustix::process::geteuid().is_root() => true,
        _ => {
            eprintln!(
                "note: not root, so these tests expect installer steps without a pids cgroup; \
                 set PAR_TEST_PIDS_CGROUP=1 where this user's cgroup has pids delegated"
            );
            false
        }
    })
}

/// Whether agents get a memory cgroup here, as [`pids_cgroups`] decides for
/// the pids one: as root the loader may create one (`PAR_TEST_MEMORY_CGROUP`
/// says otherwise either way).
pub fn memory_cgroups() -> bool {
    match std::env::var("PAR_TEST_MEMORY_CGROUP").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => rustix::process::geteuid().is_root(),
    }
}
