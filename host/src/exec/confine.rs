//! The installer sandbox: every venv, installer and import-check subprocess
//! runs under bubblewrap (`bwrap`) when it is available.
//!
//! `setup.py` is the package author's code. Under bubblewrap it sees a fresh
//! root holding the system's `/usr` read-only, a handful of files from `/etc`
//! (certificates, name service, dynamic linker), the interpreter's prefix and
//! the installer binary read-only, and exactly three writable places: the
//! venv, the package directory and the installer's cache (plus a private
//! `/tmp` that vanishes with the step). It has no network unless the step
//! needs the package index, a PID namespace so nothing outlives the step, no
//! capabilities, and a new session so it cannot push keystrokes into a
//! terminal. What it cannot do is listed in docs/SECURITY.md.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::exec::process::{self, Step};
use crate::exec::seccomp;

/// `/etc` entries a confined step may read: certificates, name resolution,
/// users, the dynamic linker's cache, time zone, pip's system config. Nothing
/// else in `/etc` (SSH keys, shadow, the runtime's own configuration) is visible.
const ETC_ALLOWED: [&str; 17] = [
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "passwd",
    "pip.conf",
    "pki",
    "resolv.conf",
    "ssl",
];

/// Top-level system directories mounted read-only (or recreated as the
/// symlinks they are on merged-`/usr` systems).
const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// Where a confined step's `HOME` and `TMPDIR` point: a private tmpfs that
/// vanishes with the step. `/tmp` itself is a read-only tmpfs holding only
/// the mount points of binds that live under it, so a step cannot leave
/// files beside them.
const PRIVATE_TMP: &str = "/tmp/par-step";

/// A bubblewrap that was found and shown to work on this machine, with
/// what it could enforce here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bubblewrap {
    program: PathBuf,
    /// The seccomp program it loads (`None` where the kernel refused it).
    seccomp: Option<Arc<[u8]>>,
    /// Whether it creates the user namespace itself and forbids further ones
    /// (`--unshare-user --disable-userns`, bubblewrap 0.8 and later).
    disable_userns: bool,
}

/// What one confined step may see besides the system.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mounts {
    /// Bound read-write at the same path.
    pub writable: Vec<PathBuf>,
    /// Bound read-only at the same path (files or directories).
    pub readonly: Vec<PathBuf>,
    /// Bound read-only at the same path over what `writable` binds: what a
    /// step must not write inside a place it may. Each must exist.
    pub protected: Vec<PathBuf>,
    /// Keep the host's network namespace.
    pub network: bool,
    /// What `/tmp` is.
    pub tmp: Tmp,
    /// The size of each tmpfs the step may write (its `/tmp` or scratch
    /// directory, and `/dev/shm`); `None` leaves the kernel's (half the RAM).
    pub tmp_bytes: Option<u64>,
    /// Where bubblewrap writes what it made (`--info-fd`: its init's pid
    /// and the sandbox's PID namespace), for those who stop it later.
    pub info: Option<Arc<OwnedFd>>,
}

/// What `/tmp` is inside the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Tmp {
    /// Read-only, but for a private scratch directory that is also `HOME`
    /// and `TMPDIR` (installer steps: they may leave nothing behind).
    #[default]
    Scratch,
    /// A private writable tmpfs; `HOME` stays what the step says (agents,
    /// whose home is their state directory).
    Writable,
}

/// `bwrap` or `none`: how results and logs name the installer sandbox in use.
pub(crate) fn label(sandbox: Option<&Bubblewrap>) -> &'static str {
    if sandbox.is_some() { "bwrap" } else { "none" }
}

impl Bubblewrap {
    /// Finds `program` (on `PATH` if relative) and runs a trivial confined
    /// command with it, so a bwrap that cannot create namespaces here (a
    /// container without user namespaces, say) is found before a load
    /// starts. What it cannot enforce here (an older bubblewrap without
    /// `--disable-userns`, a kernel without seccomp) is left out, and said
    /// in a warning; the rest of the sandbox still holds.
    pub(crate) fn probe(program: &Path) -> Result<Self, String> {
        let program =
            process::find_program(program).ok_or_else(|| format!("`{}` was not found on PATH", program.display()))?;
        let full = Self {
            program,
            seccomp: seccomp::program().map(Arc::from),
            disable_userns: true,
        };
        let without_userns_flag = Self {
            disable_userns: false,
            ..full.clone()
        };
        let without_seccomp = Self {
            seccomp: None,
            ..without_userns_flag.clone()
        };
        let mut first_error = None;
        for candidate in [full, without_userns_flag, without_seccomp] {
            match candidate.try_true() {
                Ok(()) => {
                    if first_error.is_some() {
                        tracing::warn!(
                            seccomp = candidate.seccomp.is_some(),
                            disable_userns = candidate.disable_userns,
                            reason = first_error.as_deref().unwrap_or(""),
                            "bubblewrap works here only without part of the sandbox"
                        );
                    }
                    return Ok(candidate);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or_default())
    }

    /// Runs `/bin/true` confined.
    fn try_true(&self) -> Result<(), String> {
        let program = ["/usr/bin/true", "/bin/true"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("/usr/bin/true");
        let step = Step::new("sandbox-probe", program, "/", Duration::from_secs(10));
        let step = self.confine(step, &Mounts::default()).map_err(|e| e.to_string())?;
        match process::run(&step) {
            Ok(output) if output.status.success() => Ok(()),
            Ok(output) => Err(format!(
                "`{}` cannot create a sandbox here (exit {}): {}",
                self.program.display(),
                output.code(),
                output.stderr.trim()
            )),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Rewrites `step` to run inside a fresh bubblewrap sandbox with `mounts`.
    /// Its environment stays the step's own, except that `HOME` and `TMPDIR`
    /// point at the private scratch directory.
    pub(crate) fn confine(&self, mut step: Step, mounts: &Mounts) -> std::io::Result<Step> {
        let mut args: Vec<OsString> = [
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]
        .map(OsString::from)
        .into();
        if self.disable_userns {
            push_all(&mut args, ["--unshare-user", "--disable-userns"].map(OsStr::new));
        }
        if let Some(program) = &self.seccomp {
            let fd = step.pass_fd(Arc::new(seccomp::program_fd(program)?));
            args.extend(["--seccomp".into(), fd.to_string().into()]);
        }
        // `/dev` read-only (bubblewrap's is a writable tmpfs), but for a
        // sized `/dev/shm`, and `/tmp` a sized tmpfs.
        let size = |args: &mut Vec<OsString>| {
            if let Some(bytes) = mounts.tmp_bytes {
                args.extend(["--size".into(), bytes.to_string().into()]);
            }
        };
        push_all(&mut args, ["--proc", "/proc", "--dev", "/dev"].map(OsStr::new));
        size(&mut args);
        push_all(
            &mut args,
            ["--tmpfs", "/dev/shm", "--remount-ro", "/dev"].map(OsStr::new),
        );
        if mounts.tmp == Tmp::Writable {
            size(&mut args);
        }
        push_all(&mut args, ["--tmpfs", "/tmp"].map(OsStr::new));
        if mounts.network {
            args.push("--share-net".into());
        }
        if let Some(info) = &mounts.info {
            let fd = step.pass_fd(Arc::clone(info));
            args.extend(["--info-fd".into(), fd.to_string().into()]);
        }
        for dir in SYSTEM_DIRS {
            let dir = Path::new(dir);
            match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_symlink() => {
                    if let Ok(target) = std::fs::read_link(dir) {
                        push_all(&mut args, ["--symlink".as_ref(), target.as_os_str(), dir.as_os_str()]);
                    }
                }
                Ok(meta) if meta.is_dir() => bind(&mut args, "--ro-bind", dir),
                _ => {}
            }
        }
        for name in ETC_ALLOWED {
            bind(&mut args, "--ro-bind-try", &Path::new("/etc").join(name));
        }
        for path in &mounts.readonly {
            bind(&mut args, "--ro-bind-try", path);
        }
        for path in &mounts.writable {
            bind(&mut args, "--bind", path);
        }
        for path in &mounts.protected {
            bind(&mut args, "--ro-bind", path);
        }
        if mounts.tmp == Tmp::Scratch {
            size(&mut args);
            push_all(
                &mut args,
                ["--tmpfs", PRIVATE_TMP, "--remount-ro", "/tmp"].map(OsStr::new),
            );
        }
        // Everything not bound above is the sandbox's own empty root: make it
        // read-only, so a step cannot even leave files there.
        push_all(&mut args, ["--remount-ro", "/"].map(OsStr::new));
        push_all(&mut args, ["--chdir".as_ref(), step.cwd.as_os_str(), "--".as_ref()]);
        args.push(step.program.clone().into());
        args.extend(step.args.iter().cloned());
        let mut env = step.env;
        if mounts.tmp == Tmp::Scratch {
            env.retain(|(key, _)| key != "HOME" && key != "TMPDIR");
            env.extend([
                ("HOME".into(), PRIVATE_TMP.into()),
                ("TMPDIR".into(), PRIVATE_TMP.into()),
            ]);
        }
        Ok(Step {
            program: self.program.clone(),
            args,
            env,
            ..step
        })
    }
}

fn bind(args: &mut Vec<OsString>, how: &str, path: &Path) {
    push_all(args, [how.as_ref(), path.as_os_str(), path.as_os_str()]);
}

fn push_all<'a>(args: &mut Vec<OsString>, items: impl IntoIterator<Item = &'a OsStr>) {
    args.extend(items.into_iter().map(OsStr::to_owned));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bwrap() -> Bubblewrap {
        Bubblewrap::probe(Path::new("bwrap"))
            .expect("bubblewrap is required for these tests (Debian/Ubuntu: apt-get install bubblewrap)")
    }

    fn confined(step: Step, mounts: &Mounts) -> Step {
        bwrap().confine(step, mounts).expect("confined")
    }

    fn sh(script: &str, cwd: &Path) -> Step {
        Step::new("test", "/bin/sh", cwd, Duration::from_secs(20)).args(["-c", script])
    }

    #[test]
    fn only_the_writable_mounts_can_be_written() {
        let (inside, outside) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let script = format!(
            "echo ok > in; echo bad > {out}/x; echo bad > /x; echo bad > /usr/x; echo bad > /tmp/x; echo ok > $TMPDIR/scratch && echo scratch; ls {out}",
            out = outside.path().display()
        );
        let mounts = Mounts {
            writable: vec![inside.path().to_owned()],
            ..Mounts::default()
        };
        let out = process::run(&confined(sh(&script, inside.path()), &mounts)).expect("ran");
        assert_eq!(
            std::fs::read_to_string(inside.path().join("in")).expect("written"),
            "ok\n"
        );
        assert!(!outside.path().join("x").exists(), "{}", out.stderr);
        assert!(
            out.stderr.contains("No such file or directory"),
            "the unbound directory must not even be visible: {}",
            out.stderr
        );
        for path in ["/x", "/usr/x", "/tmp/x"] {
            assert!(
                out.stderr.contains(&format!("{path}: Read-only")),
                "{path}: {}",
                out.stderr
            );
        }
        assert!(
            out.stdout.contains("scratch"),
            "the private tmp is writable: {}",
            out.stderr
        );
        assert!(!Path::new("/usr/x").exists() && !Path::new("/x").exists());
    }

    #[test]
    fn a_protected_entry_stays_read_only_inside_a_writable_place() {
        let place = tempfile::tempdir().expect("dir");
        std::fs::create_dir(place.path().join("kept")).expect("mkdir");
        std::fs::write(place.path().join("kept/file"), "original").expect("write");
        std::fs::write(place.path().join("script"), "original").expect("write");
        let mounts = Mounts {
            writable: vec![place.path().to_owned()],
            protected: vec![place.path().join("kept"), place.path().join("script")],
            ..Mounts::default()
        };
        let script = "echo new > beside; echo bad > kept/file; echo bad > kept/new; echo bad > script; true";
        let out = process::run(&confined(sh(script, place.path()), &mounts)).expect("ran");
        assert_eq!(
            std::fs::read_to_string(place.path().join("beside")).expect("written"),
            "new\n"
        );
        for file in ["kept/file", "script"] {
            assert_eq!(
                std::fs::read_to_string(place.path().join(file)).expect("read"),
                "original",
                "{file}: {}",
                out.stderr
            );
        }
        assert!(!place.path().join("kept/new").exists(), "{}", out.stderr);
        assert_eq!(out.stderr.matches("Read-only file system").count(), 3, "{}", out.stderr);
    }

    #[test]
    fn host_files_outside_the_mounts_are_invisible() {
        let secret = tempfile::tempdir().expect("dir");
        std::fs::write(secret.path().join("secret"), "s3cret").expect("write");
        let cwd = tempfile::tempdir().expect("dir");
        let script = format!("cat {}/secret; ls /etc; ls /root; id -u", secret.path().display());
        let mounts = Mounts {
            writable: vec![cwd.path().to_owned()],
            ..Mounts::default()
        };
        let out = process::run(&confined(sh(&script, cwd.path()), &mounts)).expect("ran");
        assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
        assert!(
            !out.stdout.contains("shadow"),
            "/etc must hold only the allowed entries: {}",
            out.stdout
        );
        assert!(
            out.stdout
                .lines()
                .all(|l| ETC_ALLOWED.contains(&l) || l.chars().all(|c| c.is_ascii_digit())),
            "{}",
            out.stdout
        );
    }

    #[test]
    fn no_network_without_share_net() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let cwd = tempfile::tempdir().expect("dir");
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
        let bash = |network| {
            let step = Step::new("test", "/bin/bash", cwd.path(), Duration::from_secs(20)).args(["-c", &script]);
            let mounts = Mounts {
                network,
                writable: vec![cwd.path().to_owned()],
                ..Mounts::default()
            };
            process::run(&confined(step, &mounts)).expect("ran")
        };
        let shared = bash(true);
        assert_eq!(shared.stdout.trim(), "connected", "{}", shared.stderr);
        let isolated = bash(false);
        assert_ne!(isolated.code(), 0, "{}", isolated.stdout);
        assert!(!isolated.stdout.contains("connected"));
    }

    #[test]
    fn a_daemon_that_leaves_the_group_still_dies_with_the_step() {
        let cwd = tempfile::tempdir().expect("dir");
        // setsid puts the daemon outside the step's process group, which is
        // how it escapes the group kill when no sandbox is used. It holds a
        // lock on `alive` for as long as it lives, and says so before the
        // step returns.
        let script = "setsid flock alive sh -c 'echo locked > ready; exec sleep 600' > /dev/null 2>&1 & while [ ! -s ready ]; do sleep 0.05; done";
        let mounts = Mounts {
            writable: vec![cwd.path().to_owned()],
            ..Mounts::default()
        };
        let out = process::run(&confined(sh(script, cwd.path()), &mounts)).expect("ran");
        assert_eq!(out.code(), 0, "{}", out.stderr);
        // The lock is free the moment the daemon is gone: take it, waiting
        // as long as a loaded machine could need, but no longer.
        let lock = std::fs::File::open(cwd.path().join("alive")).expect("the daemon's lock file");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive));
        });
        let taken = receiver.recv_timeout(Duration::from_secs(60));
        assert!(matches!(taken, Ok(Ok(()))), "the daemon outlived its step");
    }

    #[test]
    fn a_step_has_no_capabilities_and_cannot_gain_privileges() {
        let cwd = tempfile::tempdir().expect("dir");
        let script = "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status";
        let mounts = Mounts {
            writable: vec![cwd.path().to_owned()],
            ..Mounts::default()
        };
        let out = process::run(&confined(sh(script, cwd.path()), &mounts)).expect("ran");
        let field = |name: &str| {
            out.stdout
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in {}{}", out.stdout, out.stderr))
                .to_owned()
        };
        for capabilities in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
            assert_eq!(field(capabilities), "0000000000000000", "{capabilities}");
        }
        assert_eq!(
            field("NoNewPrivs:"),
            "1",
            "a setuid binary could raise the step's privileges"
        );
    }

    #[test]
    fn a_step_runs_in_a_session_and_user_namespace_of_its_own_with_no_terminal() {
        let cwd = tempfile::tempdir().expect("dir");
        // Fields 6 and 7 of /proc/self/stat (after the command name): session, tty.
        let script =
            "cut -d')' -f2 /proc/self/stat | cut -d' ' -f5,6; cat /proc/self/uid_map; unshare -U true && echo nested";
        let mounts = Mounts {
            writable: vec![cwd.path().to_owned()],
            ..Mounts::default()
        };
        let out = process::run(&confined(sh(script, cwd.path()), &mounts)).expect("ran");
        let lines: Vec<&str> = out.stdout.lines().collect();
        let (session, tty) = lines
            .first()
            .and_then(|line| line.split_once(' '))
            .unwrap_or_else(|| panic!("{}{}", out.stdout, out.stderr));
        // As the kernel shows it here: 0 when this session's leader is
        // outside this PID namespace (as in a container).
        let stat = std::fs::read_to_string("/proc/self/stat").expect("own stat");
        let own_session = stat
            .rsplit_once(')')
            .and_then(|(_, fields)| fields.split_whitespace().nth(3))
            .expect("own session");
        // The step's session leader is inside the sandbox, so it is seen
        // (not 0), and it is not the loader's.
        assert!(
            session.parse::<u32>().is_ok_and(|s| s > 0),
            "a session led from outside: {session}"
        );
        assert_ne!(session, own_session, "the loader's session");
        assert_eq!(tty, "0", "a controlling terminal");
        // A user namespace of its own maps one user; the host's maps them all.
        let mapped: Vec<&str> = lines.get(1).map(|l| l.split_whitespace().collect()).unwrap_or_default();
        assert_eq!(mapped.get(2), Some(&"1"), "the host's user namespace: {}", out.stdout);
        assert!(
            !out.stdout.contains("nested"),
            "a further user namespace: {}",
            out.stderr
        );
    }

    #[test]
    fn home_and_tmpdir_point_at_the_private_tmp() {
        let cwd = tempfile::tempdir().expect("dir");
        let step = sh("echo $HOME $TMPDIR $KEPT", cwd.path())
            .env("HOME", "/root")
            .env("TMPDIR", "/var/tmp")
            .env("KEPT", "yes");
        let mounts = Mounts {
            writable: vec![cwd.path().to_owned()],
            ..Mounts::default()
        };
        let out = process::run(&confined(step, &mounts)).expect("ran");
        assert_eq!(out.stdout.trim(), "/tmp/par-step /tmp/par-step yes", "{}", out.stderr);
    }
}
