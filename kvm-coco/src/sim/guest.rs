//! The model's guest programs: what a confidential guest does once it runs, scripted, and
//! the vCPU that runs it behind the software host's `KVM_RUN`.
//!
//! A served vCPU runs a list of [`GuestOp`]s, each doing what a real guest does at that
//! point: a page-state change (which exits as [`Exit::MapGpaRange`]),
//! a memory access that faults when its private/shared kind differs from the page's attribute
//! ([`Exit::MemoryFault`]), an SNP attestation-report request
//! through the guest message layer ([`Exit::SnpReqCerts`] when the
//! VMM enabled certificate requests), a TDX GetQuote ([`Exit::Tdx`]), a
//! termination or power-off request ([`Exit::SystemEvent`]). The VMM
//! handles each exit with the same typed replies as on real KVM; what the guest observed is
//! recorded as [`GuestOutcome`]s ([`SoftwareHost::outcomes`](crate::sim::host::SoftwareHost::outcomes)).
//! Programs are loaded with [`SoftwareHost::load_program`](crate::sim::host::SoftwareHost::load_program).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{kvm_regs, kvm_sregs};
use psp_driver::owner::guest_msg::{MSG_REPORT_REQ, MSG_REPORT_RSP, MsgReportReq, open, seal};
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

use crate::error::{Errno, Error, RegisterOp};
use crate::exit::{Exit, GetQuote, MapGpaRange, MemoryFault, SystemEvent, TdxExit, TdxReply};
use crate::launch::backend::LaunchVcpu;
use crate::sim::ranges;
use crate::sim::sev::{SimSevHost, SimSevVcpu, SimSevVm};
use crate::sim::tdx::{SimTdxVcpu, SimTdxVm, UserMemory};
use crate::vcpu::StateProtection;
use crate::vm_type::VmType;

const PAGE: u64 = 4096;

/// One guest operation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestOp {
    /// A page-state change request for `npages` pages at `gpa` (guest MAP_GPA_RANGE
    /// hypercall, SNP page state change, TDX MapGPA).
    MapGpa {
        /// First page.
        gpa: u64,
        /// Page count.
        npages: u64,
        /// Convert to private (else shared).
        private: bool,
    },
    /// Reads `len` bytes at `gpa` as private (encrypted, guest key) or shared memory. If
    /// the page's attribute differs, the access exits as a memory fault and is retried
    /// on the next run. The bytes read are recorded.
    Read {
        /// Address.
        gpa: u64,
        /// Length (within one page).
        len: usize,
        /// A private access.
        private: bool,
    },
    /// Writes `data` to shared memory at `gpa` (faults if the page is private).
    WriteShared {
        /// Address.
        gpa: u64,
        /// Bytes.
        data: Vec<u8>,
    },
    /// TDX: TDG.MR.REPORT binding `report_data`, written into the shared quote buffer at
    /// `gpa` (GHCI layout: version 1, status 0, in_len, out_len, then the TDREPORT), then
    /// the GetQuote TDVMCALL for `[gpa, gpa+size)`. Afterwards the guest reads the buffer
    /// back.
    GetQuote {
        /// Shared buffer.
        gpa: u64,
        /// Its size.
        size: u64,
        /// REPORTDATA.
        report_data: [u8; 64],
    },
    /// SNP: an extended guest request for an attestation report binding `report_data`,
    /// with a certificate buffer of `npages` pages at `certs_gpa` (shared). The guest seals
    /// `MSG_REPORT_REQ` (VMPL 0, KEY_SEL 0) under VMPCK0 from its secrets page with its
    /// next message sequence number, in a shared request page near the top of RAM. With
    /// certificate requests enabled it exits as
    /// [`Exit::SnpReqCerts`]; once answered, KVM issues
    /// SNP_GUEST_REQUEST and the guest opens the response under VMPCK0 and records the
    /// report, the certificate buffer and the error codes it saw
    /// ([`GuestOutcome::SnpReport`], which also says when the guest had no secrets page or
    /// no shared page to use). A `certs_gpa` that is not 4 KiB aligned is refused by KVM as
    /// bad input (no exit, no report).
    SnpReport {
        /// REPORT_DATA.
        report_data: [u8; 64],
        /// Certificate buffer.
        certs_gpa: u64,
        /// Its size in pages.
        npages: u64,
    },
    /// SEV-ES / SNP: request termination through the GHCB (`SEV_TERM`); TDX:
    /// `TDVMCALL_REPORT_FATAL_ERROR` (`TDX_FATAL`).
    Terminate {
        /// The error code (SNP reason code / TDX R12).
        code: u64,
    },
    /// `HLT`: the vCPU exits with [`Exit::Hlt`].
    Halt,
    /// Powers the machine off (an ACPI shutdown the VMM completes): the vCPU exits with
    /// [`SystemEvent::Shutdown`] and runs nothing more.
    PowerOff,
}

/// What the guest observed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestOutcome {
    /// A page-state change completed with the VMM's raw reply.
    MapGpa {
        /// First page.
        gpa: u64,
        /// The reply (0, `EINVAL`, `EAGAIN`).
        ret: u64,
    },
    /// Bytes read.
    Read {
        /// Address.
        gpa: u64,
        /// A private access.
        private: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The TDREPORT the guest obtained (1024 bytes).
    TdReport(Vec<u8>),
    /// The GetQuote completed: the TDVMCALL status and the buffer as the guest reads it.
    Quote {
        /// TDVMCALL status.
        ret: u64,
        /// The shared buffer.
        buffer: Vec<u8>,
    },
    /// The SNP extended guest request completed.
    SnpReport {
        /// The VMM's reply to the certificate request (0, `ENOSPC`, `EAGAIN`, `EIO`).
        certs_ret: u64,
        /// Pages the VMM asked for (`ENOSPC`).
        npages: u64,
        /// The attestation report (1184 bytes) if the request went to the firmware.
        report: Option<Vec<u8>>,
        /// The certificate buffer as the guest reads it.
        certs: Vec<u8>,
        /// `SW_EXITINFO2` as the guest reads it back from the GHCB:
        /// `SNP_GUEST_ERR(vmm_err, fw_err)` = `(vmm_err << 32) | fw_err`, 0 on success
        /// (`fw_err` is the SNP_GUEST_REQUEST firmware status; `vmm_err` 1, 2 or `!0`
        /// follow `certs_ret` ENOSPC, EAGAIN, EIO); `GHCB_ERR_INVALID_INPUT` (5) if KVM
        /// refused the request as bad input. `None` if the guest could not use the guest
        /// message layer (no secrets page, hence no VMPCK; or no shared RAM page for its
        /// request and response): the simulated backend then takes the report from the
        /// firmware model directly.
        exitinfo2: Option<u64>,
        /// STATUS of the `MSG_REPORT_RSP` the guest decrypted with VMPCK0 (0, or a
        /// firmware status such as INVALID_KEY); `None` if no response was decrypted.
        rsp_status: Option<u32>,
    },
    /// The guest asked to terminate.
    Terminated {
        /// Its code.
        code: u64,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Guest memory as the software host sees it: the VMM's memslots (where shared guest memory
/// is, in the VMM's own address space), the private attribute, and what an SNP guest knows
/// about itself: where its secrets page is and the last guest message sequence number it
/// used with VMPCK0 (Linux keeps that counter in the guest-OS area of the secrets page).
/// Private pages live in the firmware and TDX module models.
pub(crate) struct HostMemory {
    /// RAM ranges `(gpa, size)`.
    pub(crate) ram: Vec<(u64, u64)>,
    private: BTreeMap<u64, u64>,
    pub(crate) secrets: Option<u64>,
    msg_seqno: u64,
    /// The VMM's memory.
    user: Arc<dyn UserMemory + Send + Sync>,
    /// The memslots: gpa, size, user address.
    pub(crate) slots: Vec<(u64, u64, u64)>,
}

impl fmt::Debug for HostMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostMemory")
            .field("ram", &self.ram)
            .field("private", &self.private)
            .field("secrets", &self.secrets)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl HostMemory {
    /// The guest memory of a VMM whose address space is `user`.
    pub(crate) fn new(user: Arc<dyn UserMemory + Send + Sync>) -> Self {
        Self {
            ram: Vec::new(),
            private: BTreeMap::new(),
            secrets: None,
            msg_seqno: 0,
            user,
            slots: Vec::new(),
        }
    }

    /// The user address of `[gpa, gpa+len)` in the VMM's memslots.
    fn user_addr(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        self.slots
            .iter()
            .find(|&&(s, l, _)| gpa >= s && end <= s + l)
            .map(|&(s, _, u)| u + (gpa - s))
    }

    fn is_private(&self, gpa: u64) -> bool {
        ranges::contains(&self.private, gpa)
    }

    pub(crate) fn set_private(&mut self, start: u64, end: u64, on: bool) {
        ranges::set(&mut self.private, start, end, on);
    }

    /// Reads shared guest memory through the VMM's mapping (zeros outside its memslots or
    /// where the VMM's memory is unmapped).
    fn read(&self, gpa: u64, buf: &mut [u8]) {
        let ok = self
            .user_addr(gpa, buf.len() as u64)
            .is_some_and(|u| self.user.read(u, buf).is_ok());
        if !ok {
            buf.fill(0);
        }
    }

    /// Writes shared guest memory through the VMM's mapping (nothing outside its memslots).
    fn write(&self, gpa: u64, data: &[u8]) {
        if let Some(u) = self.user_addr(gpa, data.len() as u64) {
            let _ = self.user.write(u, data);
        }
    }

    /// The largest RAM range `(gpa, size)`: where a default guest program keeps the pages
    /// it shares with the VMM.
    pub(crate) fn largest_ram(&self) -> Option<(u64, u64)> {
        self.ram.iter().copied().max_by_key(|&(_, l)| l)
    }

    /// Two shared RAM pages for the guest's request and response messages (the pages the
    /// Linux guest driver allocates and shares): the highest pages of RAM that are neither
    /// private nor in `[avoid.0, avoid.1)` (the certificate buffer).
    fn message_pages(&self, avoid: (u64, u64)) -> Option<(u64, u64)> {
        let mut found = Vec::with_capacity(2);
        let mut ram = self.ram.clone();
        ram.sort_by_key(|&(s, l)| std::cmp::Reverse(s.saturating_add(l)));
        for (start, len) in ram {
            let mut page = start.saturating_add(len) & !(PAGE - 1);
            // Bounded scan: the guest looks near the top of each RAM range only.
            for _ in 0..4096 {
                if page < start.saturating_add(PAGE) {
                    break;
                }
                page -= PAGE;
                if !self.is_private(page) && !(avoid.0..avoid.1).contains(&page) {
                    found.push(page);
                    if let [resp, req] = found[..] {
                        return Some((req, resp));
                    }
                }
            }
        }
        None
    }
}

enum VcpuKind {
    Tdx {
        vm: SimTdxVm,
        vcpu: SimTdxVcpu,
    },
    Amd {
        host: Arc<SimSevHost>,
        vm: SimSevVm,
        vcpu: SimSevVcpu,
    },
}

/// What the guest is waiting for across an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    /// The current op faulted: re-execute it.
    Retry,
    /// A MAP_GPA exit was taken; read `ret` and record.
    MapGpa(u64),
    /// A GetQuote exit was taken for the buffer.
    Quote(u64, u64),
    /// A certificate request exit was taken: (report_data, certs_gpa, npages, the sealed
    /// guest message if the guest has a VMPCK).
    SnpReport([u8; 64], u64, u64, Option<GuestMsg>),
    /// Terminated: nothing runs any more.
    Dead,
}

/// A guest message the guest placed in shared memory: its request and response pages and
/// the sequence number it sealed the request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GuestMsg {
    req: u64,
    resp: u64,
    seqno: u64,
}

/// What the guest learned from one report request.
#[derive(Debug, Default)]
struct ReportReply {
    report: Option<Vec<u8>>,
    exitinfo2: Option<u64>,
    rsp_status: Option<u32>,
}

impl ReportReply {
    fn error(exitinfo2: u64) -> Self {
        Self {
            exitinfo2: Some(exitinfo2),
            ..Self::default()
        }
    }
}

/// Offset of `msg_type` in `struct snp_guest_msg_hdr`.
const MSG_TYPE_OFFSET: u64 = 0x34;
/// `MSG_REPORT_RSP`: `STATUS u32@0`, `REPORT_SIZE u32@4`, the report at 0x20
/// (firmware-and-measurement facts §3.7).
const REPORT_RSP_REPORT: usize = 0x20;
/// Size of the attestation report.
const REPORT_LEN: usize = 0x4A0;
/// Offset of VMPCK0 in the secrets page (facts §3.9).
const SECRETS_VMPCK0: u64 = 0x20;
/// `GHCB_ERR_INVALID_INPUT` (`arch/x86/include/asm/sev-common.h`): the `SW_EXITINFO2` of a
/// request KVM refuses as bad input.
const GHCB_ERR_INVALID_INPUT: u64 = 5;

#[derive(Debug, Default)]
struct Slots {
    ret: u64,
    npages: u64,
    event: [u64; 16],
}

/// A simulated vCPU running a scripted guest program ([`GuestOp`]s): each
/// [`run`](LaunchVcpu::run) executes the program until an operation needs the VMM and
/// returns that exit, typed exactly as on real KVM; the reply written into the exit is what
/// the guest sees next ([`outcomes`](Self::outcomes)).
pub(crate) struct SimVcpu {
    id: u32,
    vm_type: VmType,
    protection: StateProtection,
    kind: VcpuKind,
    mem: Arc<Mutex<HostMemory>>,
    program: VecDeque<GuestOp>,
    pending: Pending,
    slots: Slots,
    outcomes: Vec<GuestOutcome>,
    regs: kvm_regs,
}

impl fmt::Debug for SimVcpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimVcpu")
            .field("id", &self.id)
            .field("vm_type", &self.vm_type)
            .field("program", &self.program)
            .field("outcomes", &self.outcomes)
            .finish_non_exhaustive()
    }
}

impl SimVcpu {
    /// A vCPU of the AMD model `vm` (its model vCPU `vcpu`), for the software host.
    pub(crate) fn amd(
        vm_type: VmType,
        host: Arc<SimSevHost>,
        vm: SimSevVm,
        vcpu: SimSevVcpu,
        mem: Arc<Mutex<HostMemory>>,
    ) -> Self {
        Self::with_kind(vm_type, VcpuKind::Amd { host, vm, vcpu }, mem)
    }

    /// A vCPU of the TDX model `vm`, for the software host.
    pub(crate) fn tdx(vm: SimTdxVm, vcpu: SimTdxVcpu, mem: Arc<Mutex<HostMemory>>) -> Self {
        Self::with_kind(VmType::Tdx, VcpuKind::Tdx { vm, vcpu }, mem)
    }

    fn with_kind(vm_type: VmType, kind: VcpuKind, mem: Arc<Mutex<HostMemory>>) -> Self {
        let id = match &kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.id(),
            VcpuKind::Amd { vcpu, .. } => vcpu.id(),
        };
        SimVcpu {
            id,
            vm_type,
            protection: StateProtection::new(vm_type),
            kind,
            mem,
            program: VecDeque::new(),
            pending: Pending::None,
            slots: Slots::default(),
            outcomes: Vec::new(),
            regs: kvm_regs::default(),
        }
    }

    /// Whether `op` may access the vCPU's registers now (the model's `EINVAL` once the state
    /// is protected).
    pub(crate) fn register_access(&self, op: RegisterOp) -> Result<(), Errno> {
        match &self.kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.register_access(op),
            VcpuKind::Amd { vcpu, .. } => vcpu.register_access(op),
        }
    }

    /// `KVM_SET_XCRS` for XCR0 (AMD: into the VMSA's state; TDX: refused as protected).
    pub(crate) fn set_xcr0(&self, xcr0: u64) -> Result<(), Errno> {
        match &self.kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.register_access(RegisterOp::Xcrs),
            VcpuKind::Amd { vcpu, .. } => vcpu.set_xcr0(xcr0),
        }
    }

    /// `KVM_SET_DEBUGREGS` (AMD: DR6/DR7 into the VMSA's state).
    pub(crate) fn set_debug_regs(&self, dr6: u64, dr7: u64) -> Result<(), Errno> {
        match &self.kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.register_access(RegisterOp::DebugRegs),
            VcpuKind::Amd { vcpu, .. } => vcpu.set_debug_regs(dr6, dr7),
        }
    }

    /// Whether the guest has nothing left to run (no program, nothing pending).
    pub(crate) fn is_idle(&self) -> bool {
        self.program.is_empty() && matches!(self.pending, Pending::None | Pending::Dead)
    }

    /// The model vCPU of a TDX vCPU (its vCPU-scope sub-commands).
    pub(crate) fn tdx_vcpu(&self) -> Option<&SimTdxVcpu> {
        match &self.kind {
            VcpuKind::Tdx { vcpu, .. } => Some(vcpu),
            VcpuKind::Amd { .. } => None,
        }
    }

    /// Takes the VMM's reply to the last exit from `kvm_run` (`ret`, and `npages` for a
    /// certificate request), as the next `KVM_RUN` reads it.
    pub(crate) fn take_reply(&mut self, ret: u64, npages: u64) {
        self.slots.ret = ret;
        self.slots.npages = npages;
    }

    /// Appends `ops` to the guest program.
    pub fn load_program(&mut self, ops: impl IntoIterator<Item = GuestOp>) {
        self.program.extend(ops);
    }

    /// What the guest observed so far.
    pub fn outcomes(&self) -> &[GuestOutcome] {
        &self.outcomes
    }

    fn check_regs(&self, op: RegisterOp, name: &'static str) -> Result<(), Error> {
        self.protection.check(op)?;
        let r = match &self.kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.register_access(op),
            VcpuKind::Amd { vcpu, .. } => vcpu.register_access(op),
        };
        r.map_err(|e| self.protection.map_error(op, name, e))
    }

    fn run_error(errno: i32) -> Error {
        Error::Ioctl {
            op: "KVM_RUN",
            errno: Errno::from_raw(errno),
        }
    }

    fn finish_snp_report(
        &mut self,
        report_data: [u8; 64],
        certs_gpa: u64,
        npages: u64,
        msg: Option<GuestMsg>,
    ) -> Result<(), Error> {
        let VcpuKind::Amd { host, vm, .. } = &self.kind else {
            return Err(Self::run_error(libc::EINVAL));
        };
        let certs_ret = self.slots.ret;
        let reply = match msg {
            Some(m) => self.snp_exchange(m, certs_ret)?,
            None if certs_ret == 0 => {
                // No secrets page (so no VMPCK) or no shared page for the messages: the
                // report comes from the firmware model without the guest message layer
                // (recorded as `exitinfo2: None`).
                // snp_handle_guest_req: a VM that is not an SNP guest fails KVM_RUN with
                // EINVAL.
                let gctx = vm.snp_context().ok_or(Self::run_error(libc::EINVAL))?;
                let r = host
                    .firmware()
                    .guest_report(gctx, &report_data, 0)
                    .map_err(|_| Self::run_error(libc::EIO))?;
                ReportReply {
                    report: Some(r.as_bytes().to_vec()),
                    ..ReportReply::default()
                }
            }
            None => ReportReply::default(),
        };
        self.push_snp_outcome(certs_gpa, npages, reply);
        Ok(())
    }

    /// Records a completed report request with the certificate buffer as the guest reads it.
    fn push_snp_outcome(&mut self, certs_gpa: u64, npages: u64, reply: ReportReply) {
        let mut certs = vec![0u8; usize::try_from(npages.min(64) * PAGE).unwrap_or(0)];
        if let VcpuKind::Amd { vm, .. } = &self.kind {
            let _ = vm.host_read(certs_gpa, &mut certs);
        }
        self.outcomes.push(GuestOutcome::SnpReport {
            certs_ret: self.slots.ret,
            npages: self.slots.npages,
            report: reply.report,
            certs,
            exitinfo2: reply.exitinfo2,
            rsp_status: reply.rsp_status,
        });
    }

    /// VMPCK0 from the guest's own view of its secrets page; `None` without a secrets page
    /// or with an all-zero key (which the Linux guest driver refuses to use).
    fn vmpck0(&self) -> Result<Option<Zeroizing<[u8; 32]>>, Error> {
        let VcpuKind::Amd { vm, .. } = &self.kind else {
            return Ok(None);
        };
        let Some(secrets) = lock(&self.mem).secrets else {
            return Ok(None);
        };
        let mut key = Zeroizing::new([0u8; 32]);
        vm.guest_read_own(secrets + SECRETS_VMPCK0, &mut key[..])
            .map_err(|errno| Error::Ioctl {
                op: "KVM_RUN",
                errno,
            })?;
        Ok(key.iter().any(|&b| b != 0).then_some(key))
    }

    /// The guest driver's half of a report request: `MSG_REPORT_REQ` (REPORT_DATA, VMPL 0,
    /// KEY_SEL 0) sealed under VMPCK0 with the next sequence number, written to a shared
    /// request page. `None` if the guest has no VMPCK0 or no shared RAM page for the
    /// messages.
    fn snp_seal_report_req(
        &self,
        report_data: &[u8; 64],
        certs: (u64, u64),
    ) -> Result<Option<GuestMsg>, Error> {
        let Some(key) = self.vmpck0()? else {
            return Ok(None);
        };
        let (pages, seqno) = {
            let m = lock(&self.mem);
            (m.message_pages(certs), m.msg_seqno.wrapping_add(1))
        };
        let Some((req, resp)) = pages else {
            // No shared page to put the messages in (all RAM private): the scripted guest
            // does not convert pages behind the VMM's back, so it cannot talk to the
            // firmware.
            return Ok(None);
        };
        let mut payload = MsgReportReq::new_zeroed();
        payload.report_data = *report_data;
        let sealed = Zeroizing::new(
            seal(&key, 0, seqno, MSG_REPORT_REQ, payload.as_bytes())
                .map_err(|_| Self::run_error(libc::EINVAL))?,
        );
        self.shared_write(req, &[0u8; PAGE as usize]);
        self.shared_write(req, &sealed);
        Ok(Some(GuestMsg { req, resp, seqno }))
    }

    /// KVM's completion of the request (`snp_complete_req_certs` then
    /// `snp_handle_guest_req`), and the guest opening the response under VMPCK0: returns
    /// the report, `SW_EXITINFO2` and the `MSG_REPORT_RSP` status.
    fn snp_exchange(&self, m: GuestMsg, certs_ret: u64) -> Result<ReportReply, Error> {
        use kvm_coco_uapi::SnpReqCertsRet;
        let VcpuKind::Amd { vm, .. } = &self.kind else {
            return Err(Self::run_error(libc::EINVAL));
        };
        let kvm_run = |errno| Error::Ioctl {
            op: "KVM_RUN",
            errno,
        };
        let reply = [
            SnpReqCertsRet::Success,
            SnpReqCertsRet::NoSpace,
            SnpReqCertsRet::Again,
            SnpReqCertsRet::Io,
        ]
        .into_iter()
        .find(|r| r.raw() == certs_ret);
        let exitinfo2 = match reply {
            Some(SnpReqCertsRet::Success) => {
                vm.snp_guest_request(m.req, m.resp).map_err(kvm_run)?
            }
            Some(SnpReqCertsRet::NoSpace) => {
                // SNP_GUEST_VMM_ERR_INVALID_LEN. The Linux guest re-sends the same message
                // as a plain guest request so that the firmware consumes its sequence
                // number (no IV reuse), then reports the short buffer.
                if vm.snp_guest_request(m.req, m.resp).map_err(kvm_run)? == 0 {
                    lock(&self.mem).msg_seqno = m.seqno.wrapping_add(1);
                }
                return Ok(ReportReply::error(
                    SnpReqCertsRet::NoSpace.guest_exitinfo2(),
                ));
            }
            Some(r) => r.guest_exitinfo2(),
            // Any other reply: KVM_RUN fails with EINVAL.
            None => return Err(Self::run_error(libc::EINVAL)),
        };
        if exitinfo2 != 0 {
            return Ok(ReportReply::error(exitinfo2));
        }
        // The firmware used seqno and seqno + 1.
        lock(&self.mem).msg_seqno = m.seqno.wrapping_add(1);
        let mut page = Zeroizing::new(vec![0u8; PAGE as usize]);
        self.shared_read(m.resp, &mut page);
        let Some(key) = self.vmpck0()? else {
            return Ok(ReportReply::error(0));
        };
        let rsp = match open(&key, &page) {
            Ok((hdr, payload))
                if hdr.msg_type == MSG_REPORT_RSP
                    && hdr.msg_version == 1
                    && hdr.msg_vmpck == 0
                    && hdr.msg_seqno.get() == m.seqno.wrapping_add(1) =>
            {
                payload
            }
            // A response the guest cannot authenticate: no report.
            _ => return Ok(ReportReply::error(0)),
        };
        let word = |off: usize| {
            rsp.get(off..off + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let status = word(0);
        let report = match (status, word(4)) {
            (Some(0), Some(n)) if n as usize == REPORT_LEN => rsp
                .get(REPORT_RSP_REPORT..REPORT_RSP_REPORT + REPORT_LEN)
                .map(<[u8]>::to_vec),
            _ => None,
        };
        Ok(ReportReply {
            report,
            exitinfo2: Some(0),
            rsp_status: status,
        })
    }

    fn private_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        let page = gpa & !(PAGE - 1);
        let off = (gpa - page) as usize;
        let vm = match &self.kind {
            VcpuKind::Tdx { vm, .. } => vm,
            VcpuKind::Amd { vm, .. } => {
                // The guest's own view of its encrypted memory, page by page (the memory
                // controller decrypts for the owning guest; no debug policy involved).
                let mut done = 0usize;
                while done < buf.len() {
                    let a = gpa + done as u64;
                    let n = ((PAGE - (a & (PAGE - 1))) as usize).min(buf.len() - done);
                    vm.guest_read_own(a, &mut buf[done..done + n])
                        .map_err(|errno| Error::Ioctl {
                            op: "KVM_RUN",
                            errno,
                        })?;
                    done += n;
                }
                return Ok(());
            }
        };
        let td = vm.td().ok_or(Self::run_error(libc::EIO))?;
        let module = vm.module().clone();
        let m = lock(&module);
        let p = m.guest_read_private(td, page);
        let end = off + buf.len();
        match p.as_ref().and_then(|p| p.get(off..end)) {
            Some(src) => buf.copy_from_slice(src),
            None => buf.fill(0),
        }
        Ok(())
    }

    /// Executes the guest until it needs the VMM.
    fn step(&mut self) -> Result<Exit<'_>, Error> {
        // Complete what the previous exit asked for.
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::MapGpa(gpa) => self.outcomes.push(GuestOutcome::MapGpa {
                gpa,
                ret: self.slots.ret,
            }),
            Pending::Quote(gpa, size) => {
                let mut buffer = vec![0u8; usize::try_from(size).unwrap_or(0).min(1 << 20)];
                self.shared_read(gpa, &mut buffer);
                self.outcomes.push(GuestOutcome::Quote {
                    ret: self.slots.ret,
                    buffer,
                });
            }
            Pending::SnpReport(report_data, certs_gpa, npages, msg) => {
                self.finish_snp_report(report_data, certs_gpa, npages, msg)?;
            }
            Pending::Dead => {
                self.pending = Pending::Dead;
                return Ok(Exit::Shutdown);
            }
            Pending::Retry | Pending::None => {}
        }
        loop {
            let Some(op) = self.program.front().cloned() else {
                return Ok(Exit::Hlt);
            };
            match op {
                GuestOp::MapGpa {
                    gpa,
                    npages,
                    private,
                } => {
                    self.program.pop_front();
                    self.pending = Pending::MapGpa(gpa);
                    self.slots.ret = 0;
                    return Ok(Exit::MapGpaRange(MapGpaRange {
                        gpa,
                        npages,
                        attributes: if private { 0x10 } else { 0 },
                        long_mode: true,
                        ret: &mut self.slots.ret,
                    }));
                }
                GuestOp::Read { gpa, len, private } => {
                    if let Some(f) = self.fault(gpa, private) {
                        return Ok(Exit::MemoryFault(f));
                    }
                    self.program.pop_front();
                    let mut data = vec![0u8; len.min(PAGE as usize)];
                    if private {
                        self.private_read(gpa, &mut data)?;
                    } else {
                        self.shared_read(gpa, &mut data);
                    }
                    self.outcomes
                        .push(GuestOutcome::Read { gpa, private, data });
                }
                GuestOp::WriteShared { gpa, data } => {
                    if let Some(f) = self.fault(gpa, false) {
                        return Ok(Exit::MemoryFault(f));
                    }
                    self.program.pop_front();
                    self.shared_write(gpa, &data);
                }
                GuestOp::GetQuote {
                    gpa,
                    size,
                    report_data,
                } => {
                    if let Some(f) = self.fault(gpa, false) {
                        return Ok(Exit::MemoryFault(f));
                    }
                    self.program.pop_front();
                    let VcpuKind::Tdx { vm, .. } = &self.kind else {
                        // Not a TD: the TDVMCALL does not exist (a #UD in the guest).
                        return Ok(Exit::Shutdown);
                    };
                    let td = vm.td().ok_or(Self::run_error(libc::EIO))?;
                    let report =
                        lock(vm.module())
                            .tdg_mr_report(td, &report_data)
                            .map_err(|_| Error::Ioctl {
                                op: "KVM_RUN",
                                errno: Errno::from_raw(libc::EIO),
                            })?;
                    let bytes = report.as_bytes().to_vec();
                    // GHCI GetQuote buffer: version, status, in_len, out_len, data.
                    let mut hdr = Vec::with_capacity(24);
                    hdr.extend_from_slice(&1u64.to_le_bytes());
                    hdr.extend_from_slice(&0u64.to_le_bytes());
                    hdr.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    hdr.extend_from_slice(&0u32.to_le_bytes());
                    self.shared_write(gpa, &hdr);
                    self.shared_write(gpa + 24, &bytes);
                    self.outcomes.push(GuestOutcome::TdReport(bytes));
                    self.pending = Pending::Quote(gpa, size);
                    // KVM pre-fills SUBFUNC_UNSUPPORTED.
                    self.slots.ret = crate::exit::TdVmCallStatus::SubfuncUnsupported.raw();
                    return Ok(Exit::Tdx(TdxExit::GetQuote(TdxReply {
                        args: GetQuote { gpa, size },
                        ret: &mut self.slots.ret,
                        out: None,
                    })));
                }
                GuestOp::SnpReport {
                    report_data,
                    certs_gpa,
                    npages,
                } => {
                    self.program.pop_front();
                    if !matches!(self.kind, VcpuKind::Amd { .. }) {
                        return Ok(Exit::Shutdown);
                    }
                    // The guest seals its request; KVM (snp_handle_ext_guest_req) reads the
                    // message type from the request header: a report request carries the
                    // certificate buffer in RAX/RBX.
                    let certs_end = certs_gpa.saturating_add(npages.saturating_mul(PAGE));
                    let msg = self.snp_seal_report_req(&report_data, (certs_gpa, certs_end))?;
                    let VcpuKind::Amd { vm, .. } = &self.kind else {
                        return Ok(Exit::Shutdown);
                    };
                    let report_req = match msg {
                        Some(m) => {
                            let mut t = [0u8; 1];
                            vm.host_read(m.req + MSG_TYPE_OFFSET, &mut t)
                                .map_err(|_| Self::run_error(libc::EIO))?;
                            t[0] == MSG_REPORT_REQ
                        }
                        None => true,
                    };
                    self.slots.ret = 0;
                    self.slots.npages = npages;
                    if report_req && !certs_gpa.is_multiple_of(PAGE) {
                        // request_invalid: svm_vmgexit_bad_input(GHCB_ERR_INVALID_INPUT)
                        // (SW_EXITINFO1 = 2); no exit, no firmware request.
                        let reply = ReportReply::error(GHCB_ERR_INVALID_INPUT);
                        self.push_snp_outcome(certs_gpa, npages, reply);
                        continue;
                    }
                    if report_req && vm.req_certs_enabled() {
                        self.pending = Pending::SnpReport(report_data, certs_gpa, npages, msg);
                        return Ok(Exit::SnpReqCerts(crate::exit::SnpReqCerts {
                            gpa: certs_gpa,
                            npages,
                            npages_out: &mut self.slots.npages,
                            ret: &mut self.slots.ret,
                        }));
                    }
                    // Without REQ_CERTS KVM writes an empty certificate table and goes on.
                    if report_req && npages != 0 {
                        self.shared_write(certs_gpa, &[0u8; 24]);
                    }
                    self.finish_snp_report(report_data, certs_gpa, npages, msg)?;
                }
                GuestOp::Terminate { code } => {
                    self.program.clear();
                    self.pending = Pending::Dead;
                    self.outcomes.push(GuestOutcome::Terminated { code });
                    self.slots.event = [0; 16];
                    if self.vm_type != VmType::Tdx {
                        // GHCB termination request: KVM reports the GHCB GPA (the model
                        // has no GHCB page; 0).
                        return Ok(Exit::SystemEvent(SystemEvent::SevTerm { ghcb_gpa: 0 }));
                    }
                    // TDVMCALL_REPORT_FATAL_ERROR: RAX = vp_enter_ret, R12 = error code.
                    self.slots.event[12] = code;
                    return Ok(Exit::SystemEvent(SystemEvent::TdxFatal {
                        regs: &self.slots.event,
                    }));
                }
                GuestOp::Halt => {
                    self.program.pop_front();
                    return Ok(Exit::Hlt);
                }
                GuestOp::PowerOff => {
                    self.program.clear();
                    self.pending = Pending::Dead;
                    return Ok(Exit::SystemEvent(SystemEvent::Shutdown));
                }
            }
        }
    }

    fn shared_read(&self, gpa: u64, buf: &mut [u8]) {
        match &self.kind {
            VcpuKind::Amd { vm, .. } => {
                if vm.host_read(gpa, buf).is_err() {
                    buf.fill(0);
                }
            }
            VcpuKind::Tdx { .. } => lock(&self.mem).read(gpa, buf),
        }
    }

    fn shared_write(&self, gpa: u64, data: &[u8]) {
        match &self.kind {
            VcpuKind::Amd { vm, .. } => {
                let _ = vm.host_write(gpa, data);
            }
            VcpuKind::Tdx { .. } => lock(&self.mem).write(gpa, data),
        }
    }

    /// A memory-fault exit if the page's attribute differs from the access (only VMs with
    /// private memory have attributes).
    fn fault(&mut self, gpa: u64, private: bool) -> Option<MemoryFault> {
        if !matches!(self.vm_type, VmType::Snp | VmType::Tdx) {
            return None;
        }
        let page = gpa & !(PAGE - 1);
        if lock(&self.mem).is_private(page) == private {
            return None;
        }
        self.pending = Pending::Retry;
        Some(MemoryFault {
            flags: if private {
                u64::from(kvm_bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE)
            } else {
                0
            },
            gpa: page,
            size: PAGE,
        })
    }
}

impl LaunchVcpu for SimVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn regs(&self) -> Result<kvm_regs, Error> {
        self.check_regs(RegisterOp::Regs, "KVM_GET_REGS")?;
        match &self.kind {
            VcpuKind::Amd { vcpu, .. } => vcpu.regs().map_err(|e| {
                self.protection
                    .map_error(RegisterOp::Regs, "KVM_GET_REGS", e)
            }),
            VcpuKind::Tdx { .. } => Ok(self.regs),
        }
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), Error> {
        self.check_regs(RegisterOp::Regs, "KVM_SET_REGS")?;
        match &self.kind {
            VcpuKind::Amd { vcpu, .. } => vcpu.set_regs(regs).map_err(|e| {
                self.protection
                    .map_error(RegisterOp::Regs, "KVM_SET_REGS", e)
            }),
            VcpuKind::Tdx { .. } => {
                self.regs = *regs;
                Ok(())
            }
        }
    }

    fn sregs(&self) -> Result<kvm_sregs, Error> {
        self.check_regs(RegisterOp::Sregs, "KVM_GET_SREGS")?;
        match &self.kind {
            VcpuKind::Amd { vcpu, .. } => vcpu.sregs().map_err(|e| {
                self.protection
                    .map_error(RegisterOp::Sregs, "KVM_GET_SREGS", e)
            }),
            VcpuKind::Tdx { .. } => Ok(kvm_sregs::default()),
        }
    }

    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), Error> {
        self.check_regs(RegisterOp::Sregs, "KVM_SET_SREGS")?;
        match &self.kind {
            VcpuKind::Amd { vcpu, .. } => vcpu.set_sregs(sregs).map_err(|e| {
                self.protection
                    .map_error(RegisterOp::Sregs, "KVM_SET_SREGS", e)
            }),
            VcpuKind::Tdx { .. } => Ok(()),
        }
    }

    fn mark_protected(&mut self) {
        self.protection.mark_protected();
    }

    fn run(&mut self) -> Result<Exit<'_>, Error> {
        let r = match &self.kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.run(),
            VcpuKind::Amd { vcpu, .. } => vcpu.run(0, 0),
        };
        r.map_err(|errno| Error::Ioctl {
            op: "KVM_RUN",
            errno,
        })?;
        self.step()
    }
}
