//! Decoding of the `kvm_run` exit arms kvm-ioctls reports as `Unsupported`.
//!
//! kvm-ioctls 0.25 decodes the classic exits (I/O, MMIO, hypercall, system event, memory
//! fault, …) but not `KVM_EXIT_TDX` (40) or `KVM_EXIT_SNP_REQ_CERTS` (43). For those, the
//! mmapped `kvm_run` page is viewed as bytes and the arms are read at the offsets
//! kvm-coco-uapi defines (checked there against the kernel headers):
//!
//! | exit | arm | `kvm_run` offset |
//! |---|---|---|
//! | 43 | [`KvmExitSnpReqCerts`] `{gpa, npages, ret}` | 32 |
//! | 40 | [`KvmRunTdx`] `{flags, nr, …}` | 32 |
//! | 40 | [`KvmRunTdxGetQuote`] / [`KvmRunTdxGetTdvmcallInfo`] / [`KvmRunTdxSetupEventNotify`] / [`KvmRunTdxUnknown`] | 48 |
//!
//! Reply fields (`ret`, `npages`, `r11..r14`) are handed out as `&mut u64` into the page, so
//! the reply is in place when the next `KVM_RUN` reads it. The only `unsafe` is the byte
//! view of the page in [`decode_unsupported`]; [`decode`] is safe and unit-tested on a
//! synthetic page.

use std::mem::offset_of;
use std::ptr::NonNull;

use kvm_bindings::kvm_run;
use kvm_coco_uapi::{
    KVM_EXIT_SNP_REQ_CERTS, KVM_EXIT_TDX, KVM_RUN_SIZE, KvmExitSnpReqCerts, KvmRunMember,
    KvmRunTdx, KvmRunTdxGetQuote, KvmRunTdxGetTdvmcallInfo, KvmRunTdxSetupEventNotify,
    KvmRunTdxUnknown, TDVMCALL_GET_QUOTE, TDVMCALL_GET_TD_VM_CALL_INFO,
    TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT,
};
use zerocopy::FromBytes;

use crate::exit::{
    Exit, GetQuote, GetTdVmCallInfo, SetupEventNotifyInterrupt, SnpReqCerts, TdxExit, TdxReply,
};

/// Decodes an exit kvm-ioctls did not.
///
/// # Safety
///
/// `run` must point to a live, mmapped `kvm_run` page of at least [`KVM_RUN_SIZE`] bytes that
/// nothing else reads or writes while the returned exit lives (the caller ties `'a` to an
/// exclusive borrow of the vCPU).
pub(crate) unsafe fn decode_unsupported<'a>(run: NonNull<kvm_run>, reason: u32) -> Exit<'a> {
    // SAFETY: per the contract, `run` is a live mapping of at least KVM_RUN_SIZE bytes
    // (`size_of::<kvm_run>()` is 2352 = KVM_RUN_SIZE, and the mapping is a whole page or
    // more), exclusively ours for `'a`; every byte pattern is a valid `u8`.
    let bytes = unsafe { std::slice::from_raw_parts_mut(run.as_ptr().cast::<u8>(), KVM_RUN_SIZE) };
    decode(bytes, reason)
}

/// Decodes exits 40 and 43 from the `kvm_run` bytes; anything else (or a page too short or
/// misaligned, which the kernel's page never is) becomes [`Exit::Other`].
pub(crate) fn decode(run: &mut [u8], reason: u32) -> Exit<'_> {
    match reason {
        KVM_EXIT_SNP_REQ_CERTS => snp_req_certs(run).map(Exit::SnpReqCerts),
        KVM_EXIT_TDX => tdx(run).map(Exit::Tdx),
        _ => None,
    }
    .unwrap_or(Exit::Other(reason))
}

/// `&mut T` over the arm of type `T` at `T::KVM_RUN_OFFSET + extra`.
fn arm<T: KvmRunMember + zerocopy::KnownLayout>(run: &mut [u8], extra: usize) -> Option<&mut T> {
    let off = T::KVM_RUN_OFFSET.checked_add(extra)?;
    let bytes = run.get_mut(off..off.checked_add(size_of::<T>())?)?;
    T::mut_from_bytes(bytes).ok()
}

fn snp_req_certs(run: &mut [u8]) -> Option<SnpReqCerts<'_>> {
    let KvmExitSnpReqCerts { gpa, npages, ret } = arm::<KvmExitSnpReqCerts>(run, 0)?;
    Some(SnpReqCerts {
        gpa: *gpa,
        npages: *npages,
        npages_out: npages,
        ret,
    })
}

fn tdx(run: &mut [u8]) -> Option<TdxExit<'_>> {
    let nr = arm::<KvmRunTdx>(run, 0)?.nr;
    Some(match nr {
        TDVMCALL_GET_QUOTE => {
            let KvmRunTdxGetQuote { ret, gpa, size } = arm::<KvmRunTdxGetQuote>(run, 0)?;
            TdxExit::GetQuote(TdxReply {
                args: GetQuote {
                    gpa: *gpa,
                    size: *size,
                },
                ret,
                out: None,
            })
        }
        TDVMCALL_GET_TD_VM_CALL_INFO => {
            // `ret` and `leaf` come first; r11..r14 are the contiguous outputs.
            let off = KvmRunTdxGetTdvmcallInfo::KVM_RUN_OFFSET;
            let split = offset_of!(KvmRunTdxGetTdvmcallInfo, r11);
            let bytes = run.get_mut(off..off + size_of::<KvmRunTdxGetTdvmcallInfo>())?;
            let (head, regs) = bytes.split_at_mut(split);
            let [ret, leaf] = <[u64; 2]>::mut_from_bytes(head).ok()?;
            let out = <[u64; 4]>::mut_from_bytes(regs).ok()?;
            TdxExit::GetTdVmCallInfo(TdxReply {
                args: GetTdVmCallInfo {
                    leaf: *leaf,
                    r11: out[0],
                    r12: out[1],
                    r13: out[2],
                    r14: out[3],
                },
                ret,
                out: Some(out),
            })
        }
        TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT => {
            let KvmRunTdxSetupEventNotify { ret, vector } =
                arm::<KvmRunTdxSetupEventNotify>(run, 0)?;
            TdxExit::SetupEventNotifyInterrupt(TdxReply {
                args: SetupEventNotifyInterrupt { vector: *vector },
                ret,
                out: None,
            })
        }
        nr => {
            let u = arm::<KvmRunTdxUnknown>(run, 0)?;
            TdxExit::Unknown { nr, data: u.data }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{CertsReply, TdVmCallStatus};
    use zerocopy::IntoBytes;

    /// A zeroed, 8-byte aligned fake kvm_run page.
    fn page() -> Vec<u64> {
        vec![0u64; KVM_RUN_SIZE / 8]
    }

    // Offsets below are hand-derived from facts linux-uapi §4.1 and §6 (gcc over the 7.3.4
    // headers), independently of the uapi crate's constants: word index = offset / 8.

    #[test]
    fn snp_req_certs_at_offset_32_with_in_place_reply() {
        let mut p = page();
        p[32 / 8] = 0x7000; // gpa
        p[40 / 8] = 2; // npages
        let mut exit = decode(p.as_mut_bytes(), 43);
        let Exit::SnpReqCerts(req) = &mut exit else {
            panic!("{exit:?}")
        };
        assert_eq!((req.gpa, req.npages), (0x7000, 2));
        req.reply(CertsReply::NeedPages(5));
        assert_eq!(p[48 / 8], 28, "ret = ENOSPC at offset 48");
        assert_eq!(p[40 / 8], 5, "npages written back at offset 40");
    }

    #[test]
    fn tdx_get_quote_reads_48_and_replies_in_place() {
        let mut p = page();
        p[40 / 8] = 0x10002; // nr
        p[48 / 8] = 0x8000_0000_0000_0003; // pre-filled SUBFUNC_UNSUPPORTED
        p[56 / 8] = 0xabc000; // gpa
        p[64 / 8] = 0x2000; // size
        let mut exit = decode(p.as_mut_bytes(), 40);
        let Exit::Tdx(TdxExit::GetQuote(q)) = &mut exit else {
            panic!("{exit:?}")
        };
        assert_eq!(
            q.args,
            GetQuote {
                gpa: 0xabc000,
                size: 0x2000
            }
        );
        assert_eq!(q.current(), 0x8000_0000_0000_0003);
        q.reply(TdVmCallStatus::Success);
        assert_eq!(p[48 / 8], 0);
    }

    #[test]
    fn tdx_get_tdvmcall_info_writes_r11_to_r14() {
        let mut p = page();
        p[40 / 8] = 0x10000;
        p[56 / 8] = 1; // leaf
        let mut exit = decode(p.as_mut_bytes(), 40);
        let Exit::Tdx(TdxExit::GetTdVmCallInfo(i)) = &mut exit else {
            panic!("{exit:?}")
        };
        assert_eq!(i.args.leaf, 1);
        i.reply_info(0x2, 0x3, 0x4, 0x5);
        assert_eq!(&p[64 / 8..96 / 8], &[2, 3, 4, 5]);
    }

    #[test]
    fn tdx_setup_event_notify_and_unknown() {
        let mut p = page();
        p[40 / 8] = 0x10004;
        p[56 / 8] = 0x40;
        match decode(p.as_mut_bytes(), 40) {
            Exit::Tdx(TdxExit::SetupEventNotifyInterrupt(r)) => assert_eq!(r.args.vector, 0x40),
            other => panic!("{other:?}"),
        }
        p[40 / 8] = 0x12345;
        p[56 / 8] = 9;
        match decode(p.as_mut_bytes(), 40) {
            Exit::Tdx(TdxExit::Unknown { nr, data }) => assert_eq!((nr, data[0]), (0x12345, 9)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_reasons_and_short_pages_pass_through() {
        let mut p = page();
        assert!(matches!(decode(p.as_mut_bytes(), 77), Exit::Other(77)));
        let mut short = [0u64; 4];
        assert!(matches!(decode(short.as_mut_bytes(), 43), Exit::Other(43)));
    }
}
