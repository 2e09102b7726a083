//! The simulated backend: the launch API over the in-process models of the kernel and the
//! firmware ([`crate::sim`]), with scripted guests ([`super::guest`]) behind the vCPUs.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_coco_uapi::sev::{
    KVM_SEV_DBG_DECRYPT, KVM_SEV_DBG_ENCRYPT, KVM_SEV_INIT2, KVM_SEV_LAUNCH_FINISH,
    KVM_SEV_LAUNCH_MEASURE, KVM_SEV_LAUNCH_SECRET, KVM_SEV_LAUNCH_START,
    KVM_SEV_LAUNCH_UPDATE_DATA, KVM_SEV_LAUNCH_UPDATE_VMSA, KVM_SEV_SNP_ENABLE_REQ_CERTS,
    KVM_SEV_SNP_LAUNCH_FINISH, KVM_SEV_SNP_LAUNCH_START, KVM_SEV_SNP_LAUNCH_UPDATE,
};
use kvm_coco_uapi::{
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM,
    KvmMemoryAttributes, KvmSevDbg, KvmSevInit, KvmSevLaunchMeasure, KvmSevLaunchSecret,
    KvmSevLaunchStart, KvmSevLaunchUpdateData, KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart,
    KvmUserspaceMemoryRegion2, SevCmdId, SevRetCode, TdxCapabilitiesBuf, TdxInitVmBuf,
};
use psp_driver::owner::guest_msg::{MSG_REPORT_REQ, MSG_REPORT_RSP, MsgReportReq, open, seal};
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

use super::LaunchError;
use super::backend::{Backend, LaunchVcpu, Remaining, SnpPageType, Source};
use super::guest::{GuestOp, GuestOutcome};
use super::params::{HostLimits, SevSession, SnpIdentity};
use crate::error::{Errno, Error, RegisterOp};
use crate::exit::{Exit, GetQuote, MapGpaRange, MemoryFault, SystemEvent, TdxExit, TdxReply};
use crate::ops::{EncryptOpError, FirmwareStatus, sev_hint, tdx_hint};
use crate::sim::ranges;
use crate::sim::sev::{KvmSevError, SimSevConfig, SimSevHost, SimSevVcpu, SimSevVm};
use crate::sim::tdx::{
    KvmTdxError, SimKvmConfig, SimTdxModule, SimTdxVcpu, SimTdxVm, TdxModuleConfig, UserMemory,
};
use crate::vcpu::StateProtection;
use crate::vm_type::VmType;

const PAGE: u64 = 4096;
/// Where the simulated process "maps" a region's content: a synthetic user address per
/// GPA, so the model reads the borrowed bytes without a copy.
const UADDR_BASE: u64 = 1 << 60;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Guest memory as the host sees it: RAM ranges, the private attribute, and the shared
/// pages written so far (sparse; private pages live in the firmware model). It also holds
/// what an SNP guest knows about itself: where its secrets page is and the last guest
/// message sequence number it used with VMPCK0 (Linux keeps that counter in the guest-OS
/// area of the secrets page).
#[derive(Default)]
pub(crate) struct HostMemory {
    pub(crate) ram: Vec<(u64, u64)>,
    private: BTreeMap<u64, u64>,
    shared: BTreeMap<u64, Box<[u8; 4096]>>,
    pub(crate) secrets: Option<u64>,
    msg_seqno: u64,
    /// A real VMM's memory (the software host): shared guest memory is read and written at
    /// the user address of its memslot (`slots`: gpa, size, user address) instead of the
    /// sparse page store.
    pub(crate) user: Option<Arc<dyn UserMemory + Send + Sync>>,
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
    /// The memory of a real VMM process (see [`user`](Self::user)).
    pub(crate) fn over(user: Arc<dyn UserMemory + Send + Sync>) -> Self {
        Self {
            user: Some(user),
            ..Self::default()
        }
    }

    /// The user address of `[gpa, gpa+len)` in the memslots of a real VMM.
    fn user_addr(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        self.slots
            .iter()
            .find(|&&(s, l, _)| gpa >= s && end <= s + l)
            .map(|&(s, _, u)| u + (gpa - s))
    }

    fn in_ram(&self, gpa: u64, len: u64) -> bool {
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        self.ram.iter().any(|&(s, l)| gpa >= s && end <= s + l)
    }

    fn is_private(&self, gpa: u64) -> bool {
        ranges::contains(&self.private, gpa)
    }

    pub(crate) fn set_private(&mut self, start: u64, end: u64, on: bool) {
        ranges::set(&mut self.private, start, end, on);
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) {
        if let Some(user) = &self.user {
            let ok = self
                .user_addr(gpa, buf.len() as u64)
                .is_some_and(|u| user.read(u, buf).is_ok());
            if !ok {
                buf.fill(0);
            }
            return;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa + i as u64;
            *b = self
                .shared
                .get(&(a & !(PAGE - 1)))
                .map_or(0, |p| p[(a & (PAGE - 1)) as usize]);
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

    fn write(&mut self, gpa: u64, data: &[u8]) {
        if let Some(user) = &self.user {
            if let Some(u) = self.user_addr(gpa, data.len() as u64) {
                let _ = user.write(u, data);
            }
            return;
        }
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            let p = self
                .shared
                .entry(a & !(PAGE - 1))
                .or_insert_with(|| Box::new([0; 4096]));
            p[(a & (PAGE - 1)) as usize] = *b;
        }
    }
}

/// A [`Source`] seen as user memory at `UADDR_BASE + gpa`, zero past its bytes.
struct SourceUser<'a>(Source<'a>);

impl UserMemory for SourceUser<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let gpa = addr
            .checked_sub(UADDR_BASE)
            .ok_or(Errno::from_raw(libc::EFAULT))?;
        buf.fill(0);
        let Some(off) = gpa
            .checked_sub(self.0.gpa)
            .and_then(|o| usize::try_from(o).ok())
        else {
            return Ok(());
        };
        if let Some(src) = self.0.bytes.get(off..) {
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
        }
        Ok(())
    }
}

/// The AMD model: the simulated host, the VM and the `/dev/sev` fd of the VMM process.
struct Amd {
    host: Arc<SimSevHost>,
    vm: SimSevVm,
    sev_fd: i32,
    /// `(gpa, size, uaddr)` of each RAM slot.
    ram: Vec<(u64, u64, u64)>,
}

impl Amd {
    fn uaddr(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        self.ram
            .iter()
            .find(|&&(s, l, _)| gpa >= s && end <= s + l)
            .map(|&(s, _, u)| u + (gpa - s))
    }

    /// Copies the zero-padded content of `[gpa, gpa+len)` into the VMM's guest RAM, as
    /// QEMU has the image in guest RAM before the launch commands.
    fn stage(&self, gpa: u64, len: u64, src: Source<'_>) -> Result<u64, Errno> {
        let uaddr = self.uaddr(gpa, len).ok_or(Errno::from_raw(libc::EFAULT))?;
        let mut page = [0u8; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE);
            src.page(gpa + done, &mut page);
            self.host.write_user(uaddr + done, &page[..n as usize])?;
            done += n;
        }
        Ok(uaddr)
    }
}

enum Model {
    Tdx(SimTdxVm),
    Amd(Amd),
}

fn sev_name(id: u32) -> &'static str {
    SevCmdId::ALL
        .iter()
        .find(|c| **c as u32 == id)
        .map_or("KVM_MEMORY_ENCRYPT_OP", |c| c.name())
}

fn sev_err(vm_type: VmType, e: KvmSevError) -> EncryptOpError {
    EncryptOpError {
        command: sev_name(e.id),
        errno: e.errno,
        firmware: if e.error == 0 {
            FirmwareStatus::None
        } else {
            FirmwareStatus::Sev(SevRetCode::from_raw(e.error))
        },
        vm_type,
        hint: sev_hint(vm_type, e.id, e.errno.raw(), e.error),
    }
}

fn sev_errno(vm_type: VmType, id: u32, errno: Errno) -> EncryptOpError {
    sev_err(
        vm_type,
        KvmSevError {
            id,
            errno,
            error: 0,
        },
    )
}

/// The simulated backend: the launch commands go to the in-process models of KVM and the
/// firmware ([`crate::sim::tdx`] for TDX, [`crate::sim::sev`] for SEV, SEV-ES and SNP), and
/// its vCPUs ([`SimVcpu`]) run scripted guest programs ([`GuestOp`]).
///
/// Region contents are handed to the TDX model without a copy (a synthetic user address per
/// GPA); the AMD model copies them into the simulated VMM's guest RAM first, as QEMU has the
/// image in guest RAM before the launch commands.
///
/// ```
/// use kvm_coco::launch::{InitParams, Launch, SimBackend, TdxInit};
/// let launch = Launch::new(SimBackend::tdx(), InitParams::Tdx(TdxInit::default()))?;
/// assert_eq!(launch.vm_type(), kvm_coco::VmType::Tdx);
/// # Ok::<(), kvm_coco::launch::LaunchError>(())
/// ```
pub struct SimBackend {
    model: Model,
    mem: Arc<Mutex<HostMemory>>,
}

impl fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBackend")
            .field("vm_type", &self.vm_type())
            .finish_non_exhaustive()
    }
}

impl SimBackend {
    /// A TDX VM on a default simulated TDX module and KVM.
    pub fn tdx() -> Self {
        let module = Arc::new(Mutex::new(SimTdxModule::new(TdxModuleConfig::default())));
        Self::tdx_with(module, SimKvmConfig::default())
    }

    /// A TDX VM on `module` with KVM settings `kvm`.
    pub fn tdx_with(module: Arc<Mutex<SimTdxModule>>, kvm: SimKvmConfig) -> Self {
        Self {
            model: Model::Tdx(SimTdxVm::new(module, kvm)),
            mem: Arc::default(),
        }
    }

    /// An SEV VM on a default simulated AMD host.
    ///
    /// # Errors
    /// [`LaunchError::NotSupportedOnHost`] if the model refuses the configuration.
    pub fn sev() -> Result<Self, LaunchError> {
        Self::amd(SimSevConfig::default(), VmType::Sev)
    }

    /// An SEV-ES VM on a default simulated AMD host.
    ///
    /// # Errors
    /// As [`sev`](Self::sev).
    pub fn sev_es() -> Result<Self, LaunchError> {
        Self::amd(SimSevConfig::default(), VmType::SevEs)
    }

    /// An SNP VM on a default simulated AMD host.
    ///
    /// # Errors
    /// As [`sev`](Self::sev).
    pub fn snp() -> Result<Self, LaunchError> {
        Self::amd(SimSevConfig::default(), VmType::Snp)
    }

    /// A VM of `vm_type` (SEV, SEV-ES or SNP) on a new simulated AMD host with `cfg`.
    ///
    /// # Errors
    /// [`LaunchError::NotSupportedOnHost`] if the host or the type is refused.
    pub fn amd(cfg: SimSevConfig, vm_type: VmType) -> Result<Self, LaunchError> {
        let host = SimSevHost::new(cfg).map_err(|e| LaunchError::NotSupportedOnHost {
            vm_type,
            reason: format!("simulated AMD host: {e}"),
        })?;
        Self::amd_on(&host, vm_type)
    }

    /// A VM of `vm_type` on an existing simulated AMD host (several VMs may share it).
    ///
    /// # Errors
    /// [`LaunchError::NotSupportedOnHost`] if the host does not offer the type.
    pub fn amd_on(host: &Arc<SimSevHost>, vm_type: VmType) -> Result<Self, LaunchError> {
        let abi = match vm_type {
            VmType::Sev => KVM_X86_SEV_VM,
            VmType::SevEs => KVM_X86_SEV_ES_VM,
            VmType::Snp => KVM_X86_SNP_VM,
            _ => {
                return Err(LaunchError::NotSupportedOnHost {
                    vm_type,
                    reason: "the simulated AMD host runs SEV, SEV-ES and SNP VMs".into(),
                });
            }
        };
        let vm = SimSevVm::new(host, abi).map_err(|e| LaunchError::NotSupportedOnHost {
            vm_type,
            reason: format!("KVM_CREATE_VM: {e}"),
        })?;
        Ok(Self {
            model: Model::Amd(Amd {
                host: host.clone(),
                vm,
                sev_fd: host.open_dev_sev(),
                ram: Vec::new(),
            }),
            mem: Arc::default(),
        })
    }

    /// The simulated TD (TDX backends).
    pub fn tdx_vm(&self) -> Option<&SimTdxVm> {
        match &self.model {
            Model::Tdx(vm) => Some(vm),
            Model::Amd(_) => None,
        }
    }

    /// The simulated AMD VM (SEV, SEV-ES, SNP backends).
    pub fn sev_vm(&self) -> Option<&SimSevVm> {
        match &self.model {
            Model::Amd(a) => Some(&a.vm),
            Model::Tdx(_) => None,
        }
    }

    /// The simulated AMD host.
    pub fn sev_host(&self) -> Option<&Arc<SimSevHost>> {
        match &self.model {
            Model::Amd(a) => Some(&a.host),
            Model::Tdx(_) => None,
        }
    }

    /// The SNP launch digest as the firmware holds it (GCTX.LD).
    pub fn snp_launch_digest(&self) -> Option<[u8; 48]> {
        let a = self.amd_model()?;
        a.host.firmware().snp_launch_digest(a.vm.snp_context()?)
    }

    fn amd_model(&self) -> Option<&Amd> {
        match &self.model {
            Model::Amd(a) => Some(a),
            Model::Tdx(_) => None,
        }
    }

    fn amd_for(&self, id: u32) -> Result<&Amd, EncryptOpError> {
        self.amd_model().ok_or_else(|| self.not_amd(sev_name(id)))
    }

    fn amd_cmd<T: zerocopy::IntoBytes + zerocopy::FromBytes + zerocopy::KnownLayout>(
        &self,
        id: u32,
        arg: &mut T,
    ) -> Result<(), EncryptOpError> {
        let a = self.amd_for(id)?;
        a.vm.sev_cmd(id, a.sev_fd, arg)
            .map_err(|e| sev_err(self.vm_type(), e))
    }

    fn amd_none(&self, id: u32) -> Result<(), EncryptOpError> {
        let a = self.amd_for(id)?;
        a.vm.sev_cmd_none(id, a.sev_fd)
            .map_err(|e| sev_err(self.vm_type(), e))
    }

    /// MRTD as the TDX module holds it, once finalized.
    pub fn tdx_mrtd(&self) -> Option<[u8; 48]> {
        self.tdx_vm()?.mrtd()
    }

    fn not_amd(&self, command: &'static str) -> EncryptOpError {
        // A TD answers every SEV sub-command with ENOTTY (wrong vendor).
        EncryptOpError {
            command,
            errno: Errno::from_raw(libc::ENOTTY),
            firmware: FirmwareStatus::None,
            vm_type: self.vm_type(),
            hint: Some("SEV command on a TDX VM: use the TDX sub-commands"),
        }
    }

    fn tdx_model(&self, command: &'static str) -> Result<&SimTdxVm, EncryptOpError> {
        if !matches!(self.model, Model::Tdx(_)) {
            // An AMD VM answers TDX sub-commands with ENOTTY.
            return Err(EncryptOpError {
                command,
                errno: Errno::from_raw(libc::ENOTTY),
                firmware: FirmwareStatus::None,
                vm_type: self.vm_type(),
                hint: Some("TDX command on a VM that is not a TD"),
            });
        }
        self.tdx_vm().ok_or_else(|| self.not_amd(command))
    }
}

fn tdx_err(e: KvmTdxError) -> EncryptOpError {
    EncryptOpError {
        command: e.cmd.name(),
        errno: e.errno,
        firmware: if e.hw_error.is_success() {
            FirmwareStatus::None
        } else {
            FirmwareStatus::Tdx(e.hw_error.raw())
        },
        vm_type: VmType::Tdx,
        hint: tdx_hint(VmType::Tdx, e.cmd as u32, e.errno.raw()),
    }
}

fn core(op: &'static str, errno: Errno) -> LaunchError {
    LaunchError::Core(Error::Ioctl { op, errno })
}

impl Backend for SimBackend {
    type Vcpu = SimVcpu;

    fn vm_type(&self) -> VmType {
        match &self.model {
            Model::Tdx(_) => VmType::Tdx,
            Model::Amd(a) => match a.vm.vm_type() {
                KVM_X86_SEV_ES_VM => VmType::SevEs,
                KVM_X86_SNP_VM => VmType::Snp,
                _ => VmType::Sev,
            },
        }
    }

    fn host_limits(&self) -> Result<HostLimits, LaunchError> {
        Ok(match &self.model {
            Model::Tdx(_) => HostLimits::default(),
            Model::Amd(a) => HostLimits {
                vmsa_features: a.host.config().supported_vmsa_features,
                snp_policy_bits: a.host.snp_policy_bits(),
                tdx: None,
            },
        })
    }

    fn add_memory(&mut self, gpa: u64, size: u64) -> Result<(), LaunchError> {
        const OP: &str = "KVM_SET_USER_MEMORY_REGION2";
        match &mut self.model {
            Model::Tdx(vm) => vm
                .add_guest_memfd_region(gpa, size)
                .map_err(|e| core(OP, e))?,
            Model::Amd(a) => {
                let uaddr = a.host.mmap(size).map_err(|e| core("mmap", e))?;
                let mut r = KvmUserspaceMemoryRegion2 {
                    slot: a.ram.len() as u32,
                    guest_phys_addr: gpa,
                    memory_size: size,
                    userspace_addr: uaddr,
                    ..Default::default()
                };
                if a.vm.has_private_mem() {
                    let fd =
                        a.vm.create_guest_memfd(size, 0)
                            .map_err(|e| core("KVM_CREATE_GUEST_MEMFD", e))?;
                    r.flags = kvm_coco_uapi::KVM_MEM_GUEST_MEMFD;
                    r.guest_memfd = fd as u32;
                }
                a.vm.set_user_memory_region2(&r).map_err(|e| core(OP, e))?;
                a.ram.push((gpa, size, uaddr));
            }
        }
        lock(&self.mem).ram.push((gpa, size));
        Ok(())
    }

    fn set_private(&mut self, gpa: u64, size: u64, private: bool) -> Result<(), LaunchError> {
        const OP: &str = "KVM_SET_MEMORY_ATTRIBUTES";
        let a = KvmMemoryAttributes {
            address: gpa,
            size,
            attributes: if private {
                KVM_MEMORY_ATTRIBUTE_PRIVATE
            } else {
                0
            },
            flags: 0,
        };
        match &self.model {
            Model::Tdx(vm) => vm.set_memory_attributes(&a).map_err(|e| core(OP, e))?,
            Model::Amd(m) => m.vm.set_memory_attributes(&a).map_err(|e| core(OP, e))?,
        }
        lock(&self.mem).set_private(gpa, gpa + size, private);
        Ok(())
    }

    fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError> {
        let len = buf.len() as u64;
        match &self.model {
            Model::Amd(a) => {
                a.vm.host_read(gpa, buf)
                    .map_err(|_| LaunchError::NoMemory { gpa, len })
            }
            Model::Tdx(_) => {
                let m = lock(&self.mem);
                if !m.in_ram(gpa, len) {
                    return Err(LaunchError::NoMemory { gpa, len });
                }
                m.read(gpa, buf);
                Ok(())
            }
        }
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        let len = data.len() as u64;
        match &self.model {
            Model::Amd(a) => {
                a.vm.host_write(gpa, data)
                    .map_err(|_| LaunchError::NoMemory { gpa, len })
            }
            Model::Tdx(_) => {
                let mut m = lock(&self.mem);
                if !m.in_ram(gpa, len) {
                    return Err(LaunchError::NoMemory { gpa, len });
                }
                m.write(gpa, data);
                Ok(())
            }
        }
    }

    fn enable_map_gpa_range_exits(&mut self) -> Result<(), LaunchError> {
        Ok(())
    }

    fn enable_split_irqchip(&mut self) -> Result<(), LaunchError> {
        match &self.model {
            Model::Tdx(vm) => vm
                .enable_split_irqchip()
                .map_err(|e| core("KVM_ENABLE_CAP", e)),
            Model::Amd(_) => Ok(()),
        }
    }

    fn create_vcpu(&mut self, id: u32) -> Result<SimVcpu, LaunchError> {
        const OP: &str = "KVM_CREATE_VCPU";
        let kind = match &self.model {
            Model::Tdx(vm) => VcpuKind::Tdx {
                vm: vm.clone(),
                vcpu: vm.create_vcpu(id).map_err(|e| core(OP, e))?,
            },
            Model::Amd(a) => VcpuKind::Amd {
                host: a.host.clone(),
                vm: a.vm.clone(),
                vcpu: a.vm.create_vcpu(id).map_err(|e| core(OP, e))?,
            },
        };
        Ok(SimVcpu::with_kind(self.vm_type(), kind, self.mem.clone()))
    }

    fn sev_init2(&mut self, init: &mut KvmSevInit) -> Result<(), EncryptOpError> {
        self.amd_cmd(KVM_SEV_INIT2, init)
    }

    fn sev_launch_start(
        &mut self,
        policy: u32,
        session: Option<&SevSession>,
    ) -> Result<u32, EncryptOpError> {
        let vm_type = self.vm_type();
        let a = self.amd_for(KVM_SEV_LAUNCH_START)?;
        let mut start = KvmSevLaunchStart {
            policy,
            ..Default::default()
        };
        if let Some(s) = session {
            let map = |b: &[u8]| {
                a.host
                    .mmap_bytes(b)
                    .map_err(|e| sev_errno(vm_type, KVM_SEV_LAUNCH_START, e))
            };
            start.dh_uaddr = map(&s.dh_cert)?;
            start.dh_len = s.dh_cert.len() as u32;
            start.session_uaddr = map(&s.session)?;
            start.session_len = s.session.len() as u32;
        }
        self.amd_cmd(KVM_SEV_LAUNCH_START, &mut start)?;
        Ok(start.handle)
    }

    fn sev_launch_update_data(
        &mut self,
        gpa: u64,
        len: u64,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_LAUNCH_UPDATE_DATA;
        let a = self.amd_for(id)?;
        let uaddr = a
            .stage(gpa, len, src)
            .map_err(|e| sev_errno(vm_type, id, e))?;
        let mut d = KvmSevLaunchUpdateData {
            uaddr,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            ..Default::default()
        };
        self.amd_cmd(id, &mut d)
    }

    fn sev_launch_update_vmsa(&mut self) -> Result<(), EncryptOpError> {
        self.amd_none(KVM_SEV_LAUNCH_UPDATE_VMSA)
    }

    fn sev_launch_measure(&mut self) -> Result<Vec<u8>, EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_LAUNCH_MEASURE;
        // Length probe (uaddr 0), then the fetch, as the kernel documents.
        let mut m = KvmSevLaunchMeasure::default();
        let probe = self.amd_cmd(id, &mut m);
        if m.len == 0 {
            probe?;
        }
        let a = self.amd_for(id)?;
        let uaddr = a
            .host
            .mmap(u64::from(m.len))
            .map_err(|e| sev_errno(vm_type, id, e))?;
        m.uaddr = uaddr;
        self.amd_cmd(id, &mut m)?;
        let a = self.amd_for(id)?;
        a.host
            .read_user_vec(uaddr, m.len as usize)
            .map_err(|e| sev_errno(vm_type, id, e))
    }

    fn sev_launch_secret(
        &mut self,
        header: &[u8],
        packet: &[u8],
        gpa: u64,
    ) -> Result<(), EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_LAUNCH_SECRET;
        let a = self.amd_for(id)?;
        let err = |e| sev_errno(vm_type, id, e);
        let mut s = KvmSevLaunchSecret {
            hdr_uaddr: a.host.mmap_bytes(header).map_err(err)?,
            hdr_len: header.len() as u32,
            guest_uaddr: a
                .uaddr(gpa, packet.len() as u64)
                .ok_or(err(Errno::from_raw(libc::EFAULT)))?,
            guest_len: packet.len() as u32,
            trans_uaddr: a.host.mmap_bytes(packet).map_err(err)?,
            trans_len: packet.len() as u32,
            ..Default::default()
        };
        self.amd_cmd(id, &mut s)
    }

    fn sev_launch_finish(&mut self) -> Result<(), EncryptOpError> {
        self.amd_none(KVM_SEV_LAUNCH_FINISH)
    }

    fn sev_dbg_decrypt(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_DBG_DECRYPT;
        let a = self.amd_for(id)?;
        let err = |e| sev_errno(vm_type, id, e);
        let len = buf.len() as u64;
        let mut d = KvmSevDbg {
            src_uaddr: a
                .uaddr(gpa, len)
                .ok_or(err(Errno::from_raw(libc::EFAULT)))?,
            dst_uaddr: a.host.mmap(len.max(1)).map_err(err)?,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            ..Default::default()
        };
        self.amd_cmd(id, &mut d)?;
        let a = self.amd_for(id)?;
        a.host.read_user(d.dst_uaddr, buf).map_err(err)?;
        let _ = a.host.munmap(d.dst_uaddr);
        Ok(())
    }

    fn sev_dbg_encrypt(&mut self, gpa: u64, data: &[u8]) -> Result<(), EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_DBG_ENCRYPT;
        let a = self.amd_for(id)?;
        let err = |e| sev_errno(vm_type, id, e);
        let len = data.len() as u64;
        let mut d = KvmSevDbg {
            src_uaddr: a.host.mmap_bytes(data).map_err(err)?,
            dst_uaddr: a
                .uaddr(gpa, len)
                .ok_or(err(Errno::from_raw(libc::EFAULT)))?,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let r = self.amd_cmd(id, &mut d);
        if let Some(a) = self.amd_model() {
            let _ = a.host.munmap(d.src_uaddr);
        }
        r
    }

    fn snp_enable_req_certs(&mut self) -> Result<(), EncryptOpError> {
        self.amd_none(KVM_SEV_SNP_ENABLE_REQ_CERTS)
    }

    fn snp_launch_start(&mut self, start: &mut KvmSevSnpLaunchStart) -> Result<(), EncryptOpError> {
        self.amd_cmd(KVM_SEV_SNP_LAUNCH_START, start)
    }

    fn snp_launch_update(
        &mut self,
        range: &mut Remaining,
        page_type: SnpPageType,
        src: Source<'_>,
        cpuid_out: Option<&mut [u8; 4096]>,
    ) -> Result<(), EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_SNP_LAUNCH_UPDATE;
        let a = self.amd_for(id)?;
        let uaddr = a
            .stage(range.gpa, range.len, src)
            .map_err(|e| sev_errno(vm_type, id, e))?;
        let mut u = range.snp_launch_update(uaddr, page_type);
        let start = range.gpa;
        let r = self.amd_cmd(id, &mut u);
        range.consume_snp(&u);
        if page_type == SnpPageType::Secrets && range.gpa > start {
            // The guest finds its secrets page through the firmware's metadata (OVMF's
            // SNP_SECRETS section): the scripted guest remembers where it went.
            lock(&self.mem).secrets = Some(start);
        }
        if r.is_err()
            && let Some(out) = cpuid_out
            && let Some(a) = self.amd_model()
            && let Some(ua) = a.uaddr(range.gpa, PAGE)
        {
            let _ = a.host.read_user(ua, out);
        }
        r
    }

    fn snp_launch_finish(
        &mut self,
        finish: &mut KvmSevSnpLaunchFinish,
        identity: Option<&SnpIdentity>,
    ) -> Result<(), EncryptOpError> {
        let vm_type = self.vm_type();
        let id = KVM_SEV_SNP_LAUNCH_FINISH;
        if let Some(idn) = identity {
            let a = self.amd_for(id)?;
            let err = |e| sev_errno(vm_type, id, e);
            finish.id_block_uaddr = a.host.mmap_bytes(&idn.id_block).map_err(err)?;
            finish.id_auth_uaddr = a.host.mmap_bytes(&idn.id_auth[..]).map_err(err)?;
        }
        self.amd_cmd(id, finish)
    }

    fn tdx_capabilities(&mut self, buf: &mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError> {
        self.tdx_model("KVM_TDX_CAPABILITIES")?
            .capabilities(buf)
            .map_err(tdx_err)
    }

    fn tdx_init_vm(&mut self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError> {
        self.tdx_model("KVM_TDX_INIT_VM")?
            .init_vm(init)
            .map_err(tdx_err)
    }

    fn tdx_init_vcpu(&mut self, vcpu: &SimVcpu, rcx: u64) -> Result<(), EncryptOpError> {
        self.tdx_model("KVM_TDX_INIT_VCPU")?;
        match &vcpu.kind {
            VcpuKind::Tdx { vcpu, .. } => vcpu.init(rcx).map_err(tdx_err),
            VcpuKind::Amd { .. } => Err(self.not_amd("KVM_TDX_INIT_VCPU")),
        }
    }

    fn tdx_init_mem_region(
        &mut self,
        vcpu: &SimVcpu,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        self.tdx_model("KVM_TDX_INIT_MEM_REGION")?;
        let VcpuKind::Tdx { vcpu, .. } = &vcpu.kind else {
            return Err(self.not_amd("KVM_TDX_INIT_MEM_REGION"));
        };
        let mut r = range.tdx_init_mem_region(UADDR_BASE + range.gpa);
        let res = vcpu
            .init_mem_region(&mut r, measure, &SourceUser(src))
            .map_err(tdx_err);
        range.consume_tdx(&r);
        res
    }

    fn tdx_finalize_vm(&mut self) -> Result<(), EncryptOpError> {
        self.tdx_model("KVM_TDX_FINALIZE_VM")?
            .finalize()
            .map_err(tdx_err)
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
pub struct SimVcpu {
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
