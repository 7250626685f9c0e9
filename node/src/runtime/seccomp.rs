//! The sandbox's syscall filter: a deny-list compiled to classic BPF by `seccompiler`
//! (rust-vmm's, as used by Firecracker) and handed to bubblewrap (`--add-seccomp-fd`).
//!
//! Why a deny-list: workloads are arbitrary Linux programs (shells, interpreters, servers),
//! so an allow-list would break them in ways agents cannot debug. The list follows Docker's
//! default profile for what a process without capabilities must never reach: kernel
//! modules, kexec, mounts, new namespaces, keyrings, BPF, perf, ptrace of others,
//! userfaultfd, io_uring, clock and swap control. Denied calls fail with `EPERM`; `clone3`
//! fails with `ENOSYS` (its flags live in memory a filter cannot read, so libc falls back to
//! `clone`, whose namespace flags the filter does check).
//!
//! Bubblewrap itself also sets `PR_SET_NO_NEW_PRIVS`, drops every capability and, with
//! `--disable-userns`, stops nested user namespaces.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::RuntimeError;

/// Syscalls a workload never needs, on every architecture.
const DENIED: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
];

/// x86-only escapes to hardware and legacy interfaces.
#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[i64] = &[
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_modify_ldt,
    libc::SYS_uselib,
    libc::SYS_adjtimex,
];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_ARCH: &[i64] = &[libc::SYS_adjtimex];

/// `clone` flags that would create namespaces.
const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The compiled filters, as bubblewrap reads them (`struct sock_filter`s, native-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// Denied calls → `EPERM`.
    pub deny: Vec<u8>,
    /// `clone3` → `ENOSYS`.
    pub clone3: Vec<u8>,
}

/// Builds the filters for this machine's architecture.
///
/// # Errors
/// [`RuntimeError::Unsupported`] on an architecture seccompiler does not know.
pub fn filters() -> Result<Filters, RuntimeError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        RuntimeError::Unsupported(format!("seccomp on {}: {e}", std::env::consts::ARCH))
    })?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .chain(DENIED_ARCH)
        .map(|&nr| (nr, Vec::new()))
        .collect();
    let namespace_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(compile_error)?;
    rules.insert(libc::SYS_clone, namespace_rules);
    let deny = compile(rules, libc::EPERM, arch)?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
        arch,
    )?;
    Ok(Filters { deny, clone3 })
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<Vec<u8>, RuntimeError> {
    let errno = u32::try_from(errno).map_err(|_| RuntimeError::Unsupported("errno".into()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .map_err(compile_error)?;
    let program = BpfProgram::try_from(filter).map_err(compile_error)?;
    Ok(program
        .iter()
        .flat_map(|insn| {
            let [c0, c1] = insn.code.to_ne_bytes();
            let [k0, k1, k2, k3] = insn.k.to_ne_bytes();
            [c0, c1, insn.jt, insn.jf, k0, k1, k2, k3]
        })
        .collect())
}

fn compile_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Unsupported(format!("seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_to_whole_instructions() {
        let f = filters().unwrap();
        assert!(!f.deny.is_empty() && f.deny.len().is_multiple_of(8));
        assert!(!f.clone3.is_empty() && f.clone3.len().is_multiple_of(8));
        // Classic BPF programs are capped at 4096 instructions.
        assert!(f.deny.len() / 8 < 4096);
    }
}
