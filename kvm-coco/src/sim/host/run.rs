//! `KVM_RUN` on a served vCPU: the VMM's reply to the previous exit is taken from its
//! `kvm_run` page, the model's guest program runs to its next exit, and that exit is written
//! into the page at the kernel's offsets (facts linux-uapi §4.1), so the VMM's own exit
//! handling reads it as on hardware.

#![forbid(unsafe_code)]

use kvm_coco_uapi::{
    KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_LONG_MODE, KVM_EXIT_MEMORY_FAULT,
    KVM_EXIT_SHUTDOWN, KVM_EXIT_SNP_REQ_CERTS, KVM_EXIT_SYSTEM_EVENT, KVM_EXIT_TDX,
    KVM_HC_MAP_GPA_RANGE, KVM_RUN_EXIT_REASON_OFFSET, KVM_RUN_EXIT_UNION_OFFSET,
    KVM_RUN_EXIT_UNION_SIZE, KVM_RUN_IMMEDIATE_EXIT_OFFSET, KVM_SYSTEM_EVENT_SEV_TERM,
    KVM_SYSTEM_EVENT_SHUTDOWN, KVM_SYSTEM_EVENT_TDX_FATAL, TDVMCALL_GET_QUOTE,
};

use super::sys::RunPage;
use crate::error::Errno;
use crate::exit::{Exit, SystemEvent, TdxExit};

const U: usize = KVM_RUN_EXIT_UNION_OFFSET;
/// `hypercall.ret` (nr @32, args[6] @40, ret @88, flags @96).
const HYPERCALL_RET: usize = U + 56;
/// `snp_req_certs.npages` / `.ret`.
const REQ_CERTS_NPAGES: usize = U + 8;
const REQ_CERTS_RET: usize = U + 16;
/// `tdx.get_quote.ret` (flags @32, nr @40, ret @48).
const TDX_RET: usize = U + 16;

fn word(page: &RunPage, off: usize) -> u64 {
    let mut b = [0u8; 8];
    page.read(off, &mut b);
    u64::from_le_bytes(b)
}

/// Whether `immediate_exit` is set (`KVM_RUN` then returns `EINTR` at once).
pub(crate) fn immediate_exit(page: &RunPage) -> bool {
    let mut b = [0u8; 1];
    page.read(KVM_RUN_IMMEDIATE_EXIT_OFFSET, &mut b);
    b[0] != 0
}

/// The VMM's reply to the exit in the page: `(ret, npages)`.
pub(crate) fn reply(page: &RunPage) -> (u64, u64) {
    let mut r = [0u8; 4];
    page.read(KVM_RUN_EXIT_REASON_OFFSET, &mut r);
    match u32::from_le_bytes(r) {
        KVM_EXIT_HYPERCALL => (word(page, HYPERCALL_RET), 0),
        KVM_EXIT_SNP_REQ_CERTS => (word(page, REQ_CERTS_RET), word(page, REQ_CERTS_NPAGES)),
        KVM_EXIT_TDX => (word(page, TDX_RET), 0),
        _ => (0, 0),
    }
}

/// Writes `exit` into the page; returns the errno `KVM_RUN` fails with for it (`EFAULT` for
/// a memory fault, as KVM does), or `None`.
pub(crate) fn encode(page: &RunPage, exit: &Exit<'_>) -> Option<Errno> {
    let mut arm = [0u8; KVM_RUN_EXIT_UNION_SIZE];
    let put =
        |arm: &mut [u8], off: usize, v: u64| arm[off..off + 8].copy_from_slice(&v.to_le_bytes());
    let (reason, errno) = match exit {
        Exit::Hlt => (KVM_EXIT_HLT, None),
        Exit::Shutdown => (KVM_EXIT_SHUTDOWN, None),
        Exit::MemoryFault(f) => {
            put(&mut arm, 0, f.flags);
            put(&mut arm, 8, f.gpa);
            put(&mut arm, 16, f.size);
            (KVM_EXIT_MEMORY_FAULT, Some(Errno::from_raw(libc::EFAULT)))
        }
        Exit::MapGpaRange(m) => {
            put(&mut arm, 0, KVM_HC_MAP_GPA_RANGE);
            put(&mut arm, 8, m.gpa);
            put(&mut arm, 16, m.npages);
            put(&mut arm, 24, m.attributes);
            put(&mut arm, 56, *m.ret);
            put(
                &mut arm,
                64,
                if m.long_mode {
                    KVM_EXIT_HYPERCALL_LONG_MODE
                } else {
                    0
                },
            );
            (KVM_EXIT_HYPERCALL, None)
        }
        Exit::SnpReqCerts(c) => {
            put(&mut arm, 0, c.gpa);
            put(&mut arm, 8, c.npages);
            put(&mut arm, 16, *c.ret);
            (KVM_EXIT_SNP_REQ_CERTS, None)
        }
        Exit::Tdx(TdxExit::GetQuote(q)) => {
            put(&mut arm, 8, TDVMCALL_GET_QUOTE);
            put(&mut arm, 16, q.current());
            put(&mut arm, 24, q.args.gpa);
            put(&mut arm, 32, q.args.size);
            (KVM_EXIT_TDX, None)
        }
        Exit::SystemEvent(SystemEvent::Shutdown) => {
            arm[0..4].copy_from_slice(&KVM_SYSTEM_EVENT_SHUTDOWN.to_le_bytes());
            (KVM_EXIT_SYSTEM_EVENT, None)
        }
        Exit::SystemEvent(SystemEvent::SevTerm { ghcb_gpa }) => {
            arm[0..4].copy_from_slice(&KVM_SYSTEM_EVENT_SEV_TERM.to_le_bytes());
            arm[4..8].copy_from_slice(&1u32.to_le_bytes());
            put(&mut arm, 8, *ghcb_gpa);
            (KVM_EXIT_SYSTEM_EVENT, None)
        }
        Exit::SystemEvent(SystemEvent::TdxFatal { regs }) => {
            arm[0..4].copy_from_slice(&KVM_SYSTEM_EVENT_TDX_FATAL.to_le_bytes());
            arm[4..8].copy_from_slice(&16u32.to_le_bytes());
            for (i, r) in regs.iter().enumerate() {
                put(&mut arm, 8 + 8 * i, *r);
            }
            (KVM_EXIT_SYSTEM_EVENT, None)
        }
        // The model's guest programs produce no other exit.
        _ => (KVM_EXIT_SHUTDOWN, None),
    };
    page.write(KVM_RUN_EXIT_UNION_OFFSET, &arm);
    page.write(KVM_RUN_EXIT_REASON_OFFSET, &reason.to_le_bytes());
    errno
}
