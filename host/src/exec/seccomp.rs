//! The seccomp filter every confined step and agent runs under: bubblewrap
//! loads it (`--seccomp FD`) after building the sandbox and before it
//! starts the sandboxed program, so bubblewrap itself may mount, and the
//! program may not. It refuses the kernel interfaces a package has no use
//! for and that widen what a bug in the kernel can be reached through:
//! new user namespaces (the way to fresh capabilities), io_uring, the key
//! store, tracing other processes, BPF, performance counters, userfaultfd,
//! kernel modules and kexec, every way to mount, and pushing keystrokes
//! into a terminal. Everything else is allowed: this is a deny list on top
//! of the sandbox, not the sandbox.
//!
//! The program is written here as classic BPF (a few dozen instructions)
//! rather than through a filter crate: it needs an argument check on three
//! calls, two different errnos, and a refusal of the x32 system calls that
//! share x86-64's architecture number, which the crates at hand do not
//! express.

use std::io;
use std::os::fd::OwnedFd;

/// What the filter answers a refused call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `EPERM`: not allowed here.
    NotPermitted,
    /// `ENOSYS`: as if the kernel had no such call, so callers fall back
    /// (glibc from `clone3` to `clone`, runtimes from io_uring to epoll).
    NoSuchCall,
}

impl Answer {
    /// The errno.
    pub fn errno(self) -> u32 {
        match self {
            Answer::NotPermitted => libc::EPERM as u32,
            Answer::NoSuchCall => libc::ENOSYS as u32,
        }
    }
}

/// When a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// When argument `arg` (its low 32 bits, which the kernel reads) has any of `mask`'s bits.
    AnyBit {
        /// Which argument, from 0.
        arg: u32,
        /// The bits.
        mask: u32,
    },
    /// When argument `arg` (its low 32 bits, which the kernel reads) is one of `values`.
    OneOf {
        /// Which argument, from 0.
        arg: u32,
        /// The values.
        values: &'static [u32],
    },
}

/// One refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The call's name.
    pub name: &'static str,
    /// Its number on this architecture.
    pub number: i64,
    /// When it is refused.
    pub when: When,
    /// What the caller gets.
    pub answer: Answer,
    /// Why.
    pub why: &'static str,
}

const CLONE_NEWUSER: u32 = libc::CLONE_NEWUSER as u32;
const TIOCSTI: u32 = libc::TIOCSTI as u32;
const TIOCLINUX: u32 = 0x541c;

/// One entry of [`REFUSED`].
const fn refuse(name: &'static str, number: i64, when: When, answer: Answer, why: &'static str) -> Refusal {
    Refusal {
        name,
        number,
        when,
        answer,
        why,
    }
}

use Answer::{NoSuchCall, NotPermitted};
use When::Always;

/// Every call the filter refuses, and why: the one list, which
/// docs/SECURITY.md's table is checked against.
pub const REFUSED: &[Refusal] = &[
    refuse(
        "clone",
        libc::SYS_clone,
        When::AnyBit {
            arg: 0,
            mask: CLONE_NEWUSER,
        },
        NotPermitted,
        "a new user namespace: fresh capabilities over everything the kernel lets one hold",
    ),
    refuse(
        "unshare",
        libc::SYS_unshare,
        When::AnyBit {
            arg: 0,
            mask: CLONE_NEWUSER,
        },
        NotPermitted,
        "a new user namespace, as above",
    ),
    refuse(
        "clone3",
        libc::SYS_clone3,
        Always,
        NoSuchCall,
        "its flags are behind a pointer no filter can read; glibc falls back to `clone`",
    ),
    refuse(
        "setns",
        libc::SYS_setns,
        Always,
        NotPermitted,
        "joining another process's namespaces",
    ),
    refuse(
        "ioctl",
        libc::SYS_ioctl,
        When::OneOf {
            arg: 1,
            values: &[TIOCSTI, TIOCLINUX],
        },
        NotPermitted,
        "pushing keystrokes into a terminal's input",
    ),
    refuse(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        Always,
        NoSuchCall,
        "io_uring: a second system-call interface, outside this filter",
    ),
    refuse(
        "io_uring_enter",
        libc::SYS_io_uring_enter,
        Always,
        NoSuchCall,
        "io_uring, as above",
    ),
    refuse(
        "io_uring_register",
        libc::SYS_io_uring_register,
        Always,
        NoSuchCall,
        "io_uring, as above",
    ),
    refuse(
        "keyctl",
        libc::SYS_keyctl,
        Always,
        NotPermitted,
        "the kernel's key store, shared beyond the sandbox",
    ),
    refuse(
        "add_key",
        libc::SYS_add_key,
        Always,
        NotPermitted,
        "the kernel's key store",
    ),
    refuse(
        "request_key",
        libc::SYS_request_key,
        Always,
        NotPermitted,
        "the kernel's key store",
    ),
    refuse(
        "ptrace",
        libc::SYS_ptrace,
        Always,
        NotPermitted,
        "reading and steering other processes",
    ),
    refuse(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        Always,
        NotPermitted,
        "reading other processes' memory",
    ),
    refuse(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        Always,
        NotPermitted,
        "writing other processes' memory",
    ),
    refuse(
        "bpf",
        libc::SYS_bpf,
        Always,
        NotPermitted,
        "loading programs into the kernel",
    ),
    refuse(
        "perf_event_open",
        libc::SYS_perf_event_open,
        Always,
        NotPermitted,
        "performance counters: a side channel and a large kernel surface",
    ),
    refuse(
        "userfaultfd",
        libc::SYS_userfaultfd,
        Always,
        NotPermitted,
        "stalling the kernel mid-copy, the usual lever of kernel exploits",
    ),
    refuse(
        "init_module",
        libc::SYS_init_module,
        Always,
        NotPermitted,
        "kernel modules",
    ),
    refuse(
        "finit_module",
        libc::SYS_finit_module,
        Always,
        NotPermitted,
        "kernel modules",
    ),
    refuse(
        "delete_module",
        libc::SYS_delete_module,
        Always,
        NotPermitted,
        "kernel modules",
    ),
    refuse(
        "kexec_load",
        libc::SYS_kexec_load,
        Always,
        NotPermitted,
        "replacing the kernel",
    ),
    refuse(
        "kexec_file_load",
        libc::SYS_kexec_file_load,
        Always,
        NotPermitted,
        "replacing the kernel",
    ),
    refuse(
        "mount",
        libc::SYS_mount,
        Always,
        NotPermitted,
        "changing what the sandbox sees",
    ),
    refuse(
        "umount2",
        libc::SYS_umount2,
        Always,
        NotPermitted,
        "changing what the sandbox sees",
    ),
    refuse(
        "pivot_root",
        libc::SYS_pivot_root,
        Always,
        NotPermitted,
        "changing what the sandbox sees",
    ),
    refuse(
        "fsopen",
        libc::SYS_fsopen,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "fsconfig",
        libc::SYS_fsconfig,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "fsmount",
        libc::SYS_fsmount,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "fspick",
        libc::SYS_fspick,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "move_mount",
        libc::SYS_move_mount,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "open_tree",
        libc::SYS_open_tree,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "mount_setattr",
        libc::SYS_mount_setattr,
        Always,
        NotPermitted,
        "the new mount interface",
    ),
    refuse(
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        Always,
        NotPermitted,
        "opening files by handle, past the mount namespace",
    ),
    refuse("swapon", libc::SYS_swapon, Always, NotPermitted, "the host's swap"),
    refuse("swapoff", libc::SYS_swapoff, Always, NotPermitted, "the host's swap"),
    refuse("reboot", libc::SYS_reboot, Always, NotPermitted, "the host's power"),
    refuse(
        "acct",
        libc::SYS_acct,
        Always,
        NotPermitted,
        "the host's process accounting",
    ),
    refuse(
        "quotactl",
        libc::SYS_quotactl,
        Always,
        NotPermitted,
        "the host's disk quotas",
    ),
];

/// The architecture the program checks for (`AUDIT_ARCH_*`): a call made
/// through another ABI (32-bit x86 on x86-64) is refused whole.
#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// The x32 ABI's calls carry this bit in their number under x86-64's
/// architecture: refused whole, or they would bypass every rule by number.
#[cfg(target_arch = "x86_64")]
const X32_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_BIT: Option<u32> = None;

// Classic BPF, as `struct sock_filter`.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
/// `struct seccomp_data`: `nr` at 0, `arch` at 4, `args[i]` at 16 + 8i
/// (low half first: both supported architectures are little-endian).
const NR: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn arg_offset(arg: u32) -> u32 {
    16 + 8 * arg
}

#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn ret_errno(answer: Answer) -> Insn {
    stmt(RET_K, RET_ERRNO | answer.errno())
}

/// The filter, as bubblewrap's `--seccomp` reads it; `None` on an
/// architecture par has no filter for.
pub(crate) fn program() -> Option<Vec<u8>> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return None;
    }
    let mut insns = vec![
        stmt(LD_W_ABS, ARCH_OFFSET),
        jump(JEQ_K, ARCH, 1, 0),
        ret_errno(NoSuchCall),
        stmt(LD_W_ABS, NR),
    ];
    if let Some(bit) = X32_BIT {
        insns.extend([jump(JSET_K, bit, 0, 1), ret_errno(NoSuchCall)]);
    }
    for refusal in REFUSED {
        // Each block starts with the call's number loaded and ends in a
        // return on every path, so a block skipped leaves the number loaded.
        let body: Vec<Insn> = match refusal.when {
            When::Always => vec![ret_errno(refusal.answer)],
            When::AnyBit { arg, mask } => vec![
                stmt(LD_W_ABS, arg_offset(arg)),
                jump(JSET_K, mask, 0, 1),
                ret_errno(refusal.answer),
                stmt(RET_K, RET_ALLOW),
            ],
            When::OneOf { arg, values } => {
                let count = values.len();
                let mut body = vec![stmt(LD_W_ABS, arg_offset(arg))];
                for (at, value) in values.iter().enumerate() {
                    body.push(jump(JEQ_K, *value, u8::try_from(count - at).ok()?, 0));
                }
                body.extend([stmt(RET_K, RET_ALLOW), ret_errno(refusal.answer)]);
                body
            }
        };
        let number = u32::try_from(refusal.number).ok()?;
        insns.push(jump(JEQ_K, number, 0, u8::try_from(body.len()).ok()?));
        insns.extend(body);
    }
    insns.push(stmt(RET_K, RET_ALLOW));
    let mut bytes = Vec::with_capacity(insns.len() * 8);
    for insn in insns {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    Some(bytes)
}

/// A descriptor to hand bubblewrap, reading `program` from its start: one
/// per step, as bubblewrap reads it from the descriptor's own offset.
pub(crate) fn program_fd(program: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("par-seccomp", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut written = 0;
    while written < program.len() {
        written += rustix::io::write(&fd, &program[written..])?;
    }
    rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program_on_a_return_or_a_block() {
        let program = program().expect("a filter for this architecture");
        let insns: Vec<Insn> = program
            .chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        assert!(insns.len() < 4096, "the kernel's limit on a filter");
        assert_eq!(insns.last().map(|i| (i.code, i.k)), Some((RET_K, RET_ALLOW)));
        for (at, insn) in insns.iter().enumerate() {
            if insn.code & 0x07 == 0x05 {
                for offset in [insn.jt, insn.jf] {
                    assert!(
                        at + 1 + usize::from(offset) < insns.len(),
                        "jump out of the program at {at}"
                    );
                }
            }
        }
        let names: std::collections::BTreeSet<_> = REFUSED.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), REFUSED.len(), "each call once");
    }

    /// The table docs/SECURITY.md carries: one row per refused call.
    fn documented_table() -> String {
        use std::fmt::Write as _;
        let mut table = String::from("| call | refused | answer | why |\n| --- | --- | --- | --- |\n");
        for refusal in REFUSED {
            let when = match refusal.when {
                When::Always => "always".to_owned(),
                When::AnyBit { arg, mask } => format!("argument {arg} has a bit of `{mask:#x}`"),
                When::OneOf { arg, values } => format!(
                    "argument {arg} is {}",
                    values
                        .iter()
                        .map(|v| format!("`{v:#x}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            };
            let answer = match refusal.answer {
                Answer::NotPermitted => "`EPERM`",
                Answer::NoSuchCall => "`ENOSYS`",
            };
            let _ = writeln!(table, "| `{}` | {when} | {answer} | {} |", refusal.name, refusal.why);
        }
        table
    }

    #[test]
    fn the_security_document_lists_exactly_these_refusals() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/SECURITY.md");
        let document = std::fs::read_to_string(path).expect("docs/SECURITY.md");
        let table = documented_table();
        assert!(
            document.contains(&table),
            "docs/SECURITY.md must hold this table, as the filter says it:\n\n{table}"
        );
    }
}
