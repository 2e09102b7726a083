//! A model of Linux 7.3 KVM's AMD SEV layer (`arch/x86/kvm/svm/sev.c`) over psp-driver's
//! software PSP firmware ([`psp_driver::sim::SimFirmware`]).
//!
//! | type | what |
//! |---|---|
//! | [`SimSevHost`] | the machine: firmware behind a serialized [`psp_driver::Psp`], KVM's ASID bitmaps and DEACTIVATE / DF_FLUSH protocol ([`psp_driver::AsidManager`]), the VMM process's memory ([`SimSevHost::mmap`]) and fd table ([`SimSevHost::open_dev_sev`]) |
//! | [`SimSevVm`] | a VM fd of type DEFAULT (legacy `KVM_SEV_INIT` / `KVM_SEV_ES_INIT`), SEV, SEV-ES or SNP: memslots, guest_memfd, memory attributes, encrypted regions and `KVM_MEMORY_ENCRYPT_OP` ([`SimSevVm::mem_enc_op`]) |
//! | [`SimSevVcpu`] | a vCPU fd: register state (synced into the VMSA), the protected-state gate, `KVM_RUN` entry checks |
//!
//! Guest memory is zero-copy: user mappings and guest_memfd files are host RAM registered
//! in the firmware's [`psp_driver::sim::mem::PhysMem`], so LAUNCH_UPDATE_DATA encrypts the
//! VMM's own buffer in place and the host reads ciphertext afterwards
//! ([`SimSevVm::host_read`]); [`SimSevVm::guest_read`] shows the guest's view where the
//! firmware's debug path allows it.
//!
//! The sub-commands take the uAPI argument structs of `kvm-coco-uapi` as bytes and give the
//! kernel's errno, in the kernel's check order, with `kvm_sev_cmd.error` set to the firmware
//! status of the last firmware command (linux-uapi facts §3, §9, §10):
//!
//! | situation | result |
//! |---|---|
//! | `kvm_amd.sev` off | `ENOTTY` |
//! | SNP VM after INIT2, any id < 100 (including a second INIT2) | `EPERM` |
//! | unknown id, or SEND_UPDATE_VMSA / RECEIVE_UPDATE_VMSA / CERT_EXPORT | `EINVAL` (`error` untouched) |
//! | KVM_SEV_ES_INIT with SEV-ES off | `ENOTTY` |
//! | legacy INIT on a non-DEFAULT VM; INIT2 on DEFAULT; any INIT twice or after a vCPU; bad `flags` / `vmsa_features` / `ghcb_version` | `EINVAL` |
//! | no ASID left (nothing reclaimable) / none for the type | `EBUSY` / `ENOTTY` |
//! | platform INIT fails | its errno, `error` = firmware status |
//! | a command before INIT (RECEIVE_UPDATE_DATA: `EINVAL`) | `ENOTTY` |
//! | `sev_fd` (LAUNCH_START, SNP_LAUNCH_START/UPDATE/FINISH) or the remembered fd not `/dev/sev` | `EBADF` |
//! | a blob address with length 0 or > 16384; LAUNCH_MEASURE / attestation length > 16384 | `EINVAL` |
//! | unmapped user memory to pin | `ENOMEM` (`EFAULT` for plain copies) |
//! | LAUNCH_SECRET guest range not physically contiguous | `EINVAL` |
//! | LAUNCH_UPDATE_VMSA on SEV | `ENOTTY`; twice, with guest debug or DR7 bits: `EINVAL` |
//! | firmware failure | `EIO`, `error` = status |
//! | SNP_LAUNCH_START: flags, policy bits, bit 17 clear, second start | `EINVAL`; GCTX_CREATE fails: `ENOTTY` |
//! | SNP_LAUNCH_UPDATE before SNP_LAUNCH_START, bad len/type/flags/uaddr, GFN not in a guest_memfd slot | `EINVAL` |
//! | SNP_LAUNCH_UPDATE: first page not private, already populated, or refused by the firmware | `EIO`, `error` = firmware status (0 if none ran); later pages: partial success |
//! | SNP_LAUNCH_FINISH before SNP_LAUNCH_START, flags, VMSAs already protected | `EINVAL` |
//! | SNP_ENABLE_REQ_CERTS not SNP or after a vCPU | `EINVAL` |
//!
//! The guest's SNP_GUEST_REQUEST exit is [`SimSevVm::snp_guest_request`]
//! (`snp_handle_guest_req`): the request page goes to the firmware, the response page and
//! `SNP_GUEST_ERR(0, fw_err)` come back to the guest; [`SimSevVm::guest_read_own`] is the
//! guest's own view of its private pages (where it finds the VMPCKs of its secrets page).
//!
//! Not modelled: mirror VMs and intra-host migration (`KVM_CAP_VM_{COPY,MOVE}_ENC_CONTEXT_FROM`), `EINTR`/`ETIMEDOUT`, RLIMIT_MEMLOCK
//! accounting, huge pages, the GHCB and guest execution. SEND_* / RECEIVE_* follow KVM's
//! handlers (length queries: `session_len`, `hdr_len` or `trans_len` 0; missing blobs:
//! `EINVAL`; a guest range crossing a page: `EINVAL`; RECEIVE_START uses `sev_fd` and binds
//! the ASID) over the firmware's migration commands.
//!
//! # Example: an SEV launch
//!
//! ```
//! use kvm_coco::sim::sev::*;
//! use kvm_coco_uapi::*;
//!
//! let host = SimSevHost::new(SimSevConfig::default()).unwrap();
//! let sev_fd = host.open_dev_sev();
//! let vm = SimSevVm::new(&host, KVM_X86_SEV_VM).unwrap();
//! vm.sev_cmd(KVM_SEV_INIT2, sev_fd, &mut KvmSevInit::default())?;
//!
//! // Guest RAM: 64 KiB of the VMM's memory below 4 GiB.
//! let ram = host.mmap(0x10000).unwrap();
//! host.write_user(ram, &[0x90; 0x10000]).unwrap();
//! vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
//!     slot: 0, guest_phys_addr: 0xFFFF_0000, memory_size: 0x10000, userspace_addr: ram,
//!     ..Default::default()
//! }).unwrap();
//!
//! let mut start = KvmSevLaunchStart { policy: 0x1, ..Default::default() }; // NODBG
//! vm.sev_cmd(KVM_SEV_LAUNCH_START, sev_fd, &mut start)?;
//! let mut data = KvmSevLaunchUpdateData { uaddr: ram, len: 0x10000, ..Default::default() };
//! vm.sev_cmd(KVM_SEV_LAUNCH_UPDATE_DATA, sev_fd, &mut data)?;
//!
//! // The host now sees ciphertext in its own buffer.
//! assert_ne!(host.read_user_vec(ram, 16).unwrap(), vec![0x90; 16]);
//!
//! // Query the measurement length: the firmware answers INVALID_LENGTH with 48.
//! let mut m = KvmSevLaunchMeasure::default();
//! let e = vm.sev_cmd(KVM_SEV_LAUNCH_MEASURE, sev_fd, &mut m).unwrap_err();
//! assert_eq!((e.errno.raw(), e.error, m.len), (libc::EIO, 0x04, 48));
//! # Ok::<(), KvmSevError>(())
//! ```

#![forbid(unsafe_code)]

mod host;
mod migrate;
mod snp;
mod vcpu;
mod vm;

pub use host::{
    FdKind, KVM_SNP_POLICY_MASK_VALID, SNP_POLICY_MASK_BASE, SVM_SEV_FEAT_DEBUG_SWAP,
    SVM_SEV_FEAT_SECURE_TSC, SVM_SEV_FEAT_SNP_ACTIVE, SimSevConfig, SimSevHost, USER_ADDRESS_SPACE,
};
pub use snp::{INITIAL_VMSA_GPA, SNP_POLICY_MASK_RSVD_MBO, snp_guest_err};
pub use vcpu::{DR7_FIXED_1, RESET_PAT, VcpuRegs};
pub use vm::{GHCB_VERSION_MAX, KvmSevError, SEV_FW_BLOB_MAX_SIZE, SimSevVcpu, SimSevVm};
