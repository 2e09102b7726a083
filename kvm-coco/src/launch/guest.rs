//! Scripted guest programs for the simulated vCPU.
//!
//! A [`SimVcpu`](super::SimVcpu) runs a list of [`GuestOp`]s, each doing what a real guest
//! does at that point: a page-state change (which exits as
//! [`Exit::MapGpaRange`](crate::Exit::MapGpaRange)), a memory access that faults when its
//! private/shared kind differs from the page's attribute
//! ([`Exit::MemoryFault`](crate::Exit::MemoryFault)), a TDX GetQuote
//! ([`Exit::Tdx`](crate::Exit::Tdx)), a termination request
//! ([`Exit::SystemEvent`](crate::Exit::SystemEvent)). The VMM handles each exit with the
//! same typed replies as on real KVM; what the guest observed is recorded as
//! [`GuestOutcome`]s.

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
    /// [`Exit::SnpReqCerts`](crate::Exit::SnpReqCerts); once answered, KVM issues
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
    /// `HLT`: the vCPU exits with [`Exit::Hlt`](crate::Exit::Hlt).
    Halt,
    /// Powers the machine off (an ACPI shutdown the VMM completes): the vCPU exits with
    /// [`SystemEvent::Shutdown`](crate::SystemEvent::Shutdown) and runs nothing more.
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
