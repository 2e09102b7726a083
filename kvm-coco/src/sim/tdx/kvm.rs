//! A model of Linux 7.3 KVM's TDX code (`arch/x86/kvm/vmx/tdx.c`) on top of
//! [`SimTdxModule`]: the `KVM_MEMORY_ENCRYPT_OP` sub-commands with their uAPI argument
//! structs, the errno for each misuse, and the SEAMCALL sequences KVM issues.
//!
//! [`SimTdxVm`] is a VM fd of type `KVM_X86_TDX_VM`, [`SimTdxVcpu`] a vCPU fd. The
//! byte-level entry points ([`SimTdxVm::tdx_ioctl`], [`SimTdxVcpu::tdx_ioctl`]) take the
//! `kvm_tdx_cmd` and the buffer its `data` points to, so a simulated backend can wire them
//! to `KVM_MEMORY_ENCRYPT_OP`; typed wrappers take the kvm-coco-uapi buffers. User memory
//! that KVM would `copy_from_user` (the INIT_MEM_REGION source) is read through
//! [`UserMemory`].
//!
//! Errnos (linux-uapi facts §4, §10.4):
//!
//! | situation | errno |
//! |---|---|
//! | `hw_error ≠ 0` on input, unknown command | `EINVAL` |
//! | CAPABILITIES with `nent` below the module's count (nent not updated) | `E2BIG` |
//! | INIT_VM not UNINITIALIZED, `flags ≠ 0`, reserved / padding ≠ 0, bad CPUID or attributes | `EINVAL` |
//! | INIT_VM with `nent > 256` | `E2BIG` |
//! | INIT_VM rejected by TDH.MNG.INIT with `TDX_OPERAND_INVALID` (status in `hw_error`) | `EINVAL` |
//! | `KVM_CREATE_VCPU` without a split irqchip | `EINVAL` |
//! | `KVM_CREATE_VCPU` before INIT_VM (or after FINALIZE) | `EIO` |
//! | any vCPU command or FINALIZE before INIT_VM or after FINALIZE | `EINVAL` |
//! | INIT_VCPU twice; INIT_MEM_REGION before that vCPU's INIT_VCPU | `EINVAL` |
//! | INIT_MEM_REGION misaligned, empty, overflowing or shared range; page not PRIVATE or without guest_memfd | `EINVAL` |
//! | INIT_MEM_REGION on a page already populated | `EEXIST` |
//! | GET_CPUID with too small `nent` (needed count written back) | `E2BIG` |
//! | other SEAMCALL failure (status in `hw_error` where KVM reports it; the VM is then bugged and every later call gets `EIO`) | `EIO` |
//! | `KVM_RUN` before FINALIZE or before INIT_VCPU, or with sync-regs bits | `EINVAL` |
//! | register ioctls on a vCPU whose state is protected (every vCPU unless ATTRIBUTES.DEBUG) | `EINVAL` |
//!
//! Not modelled: signals (`EINTR` with partial progress), `EBUSY` from contended
//! SEAMCALLs, huge pages, and TD teardown ordering.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_coco_uapi::tdx::{
    KVM_TDX_CAPABILITIES, KVM_TDX_FINALIZE_VM, KVM_TDX_GET_CPUID, KVM_TDX_INIT_MEM_REGION,
    KVM_TDX_INIT_VCPU, KVM_TDX_INIT_VM, KVM_TDX_MEASURE_MEMORY_REGION,
};
use kvm_coco_uapi::{
    CpuidFam, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES, KVM_MEMORY_ATTRIBUTE_PRIVATE,
    KvmCpuid2, KvmCpuidEntry2, KvmMemoryAttributes, KvmTdxCapabilities, KvmTdxCmd,
    KvmTdxInitMemRegion, KvmTdxInitVm, TdxCapabilitiesBuf, TdxCmdId, TdxInitVmBuf,
};
use zerocopy::{FromBytes, IntoBytes};

use super::module::{PAGE_SIZE, Page, SimTdxModule, TdHandle, VpHandle};
use super::params::{
    CPUID_NO_SUBLEAF, MIN_NUM_TDCS_PAGES, TDX_CONFIG_FLAGS_MAX_GPAW, TDX_CONFIG_FLAGS_NO_RBP_MOD,
    TDX_TD_ATTR_DEBUG, TDX_TD_ATTR_SEPT_VE_DISABLE, TdParams, VMX_EPTP_MT_WB, VMX_EPTP_PWL_4,
    VMX_EPTP_PWL_5,
};
use super::status::TdxStatus;
use crate::error::{Errno, RegisterOp};
use crate::measure::calc::TDX_EXTEND_CHUNK;
use crate::sim::ranges;

const EINVAL: Errno = Errno::from_raw(libc::EINVAL);
const EIO: Errno = Errno::from_raw(libc::EIO);
const E2BIG: Errno = Errno::from_raw(libc::E2BIG);
const EFAULT: Errno = Errno::from_raw(libc::EFAULT);
const EEXIST: Errno = Errno::from_raw(libc::EEXIST);
const ENOSPC: Errno = Errno::from_raw(libc::ENOSPC);

/// `KVM_SUPPORTED_TD_ATTRS` of Linux 7.3: only SEPT_VE_DISABLE.
pub const KVM_SUPPORTED_TD_ATTRS: u64 = TDX_TD_ATTR_SEPT_VE_DISABLE;
/// Bit 1 of `user_tdvmcallinfo_1_r11`: SetupEventNotifyInterrupt goes to user space.
pub const TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT: u64 = 1 << 1;

/// The host-kernel side of the model: what KVM itself supports on top of the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimKvmConfig {
    /// TD attributes KVM lets user space set (`KVM_SUPPORTED_TD_ATTRS`; add
    /// [`TDX_TD_ATTR_DEBUG`] to model a kernel that allows debug TDs).
    pub supported_td_attrs: u64,
    /// XFAM bits KVM supports (`supported_xcr0 | supported_xss`).
    pub supported_xfam: u64,
    /// `kvm->max_vcpus` (TD_PARAMS.MAX_VCPUS).
    pub max_vcpus: u16,
    /// `kvm->arch.default_tsc_khz` (TD_PARAMS.TSC_FREQUENCY = kHz / 25000).
    pub tsc_khz: u32,
    /// Whether the CPU has 5-level EPT (needed for GPAW 52).
    pub ept_5level: bool,
}

impl Default for SimKvmConfig {
    fn default() -> Self {
        Self {
            supported_td_attrs: KVM_SUPPORTED_TD_ATTRS,
            supported_xfam: u64::MAX,
            max_vcpus: 64,
            tsc_khz: 2_500_000,
            ept_5level: true,
        }
    }
}

/// KVM's TD state (`kvm_tdx->state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdState {
    /// After `KVM_CREATE_VM`.
    Uninitialized,
    /// After KVM_TDX_INIT_VM.
    Initialized,
    /// After KVM_TDX_FINALIZE_VM.
    Runnable,
}

/// Failure of a typed TDX sub-command: the errno and the SEAMCALL status KVM reported in
/// `hw_error` (0 when there was none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmTdxError {
    /// The sub-command.
    pub cmd: TdxCmdId,
    /// The errno.
    pub errno: Errno,
    /// `kvm_tdx_cmd.hw_error`.
    pub hw_error: TdxStatus,
}

impl fmt::Display for KvmTdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cmd.name(), self.errno)?;
        if !self.hw_error.is_success() {
            write!(f, "; TDX module status {}", self.hw_error)?;
        }
        Ok(())
    }
}

impl std::error::Error for KvmTdxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}

pub use crate::sim::user::{UserMemory, UserRegion, UserSpace};

#[derive(Debug)]
struct VcpuSt {
    vp: Option<VpHandle>,
    initialized: bool,
    protected: bool,
}

#[derive(Debug)]
struct VmState {
    state: TdState,
    td: Option<TdHandle>,
    bugged: bool,
    attributes: u64,
    xfam: u64,
    shared_bit: u64,
    split_irqchip: bool,
    vcpus: BTreeMap<u32, VcpuSt>,
    gmem: BTreeMap<u64, u64>,
    private: BTreeMap<u64, u64>,
    populated: BTreeSet<u64>,
}

struct VmInner {
    module: Arc<Mutex<SimTdxModule>>,
    kvm: SimKvmConfig,
    st: Mutex<VmState>,
}

impl Drop for VmInner {
    /// `tdx_vm_destroy`: the TD is torn down and its HKID freed when the VM goes.
    fn drop(&mut self) {
        let st = self.st.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(td) = st.td.take() {
            lock(&self.module).teardown(td);
        }
    }
}

/// A simulated TDX VM (`KVM_CREATE_VM(KVM_X86_TDX_VM)`). See the [module docs](self).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use kvm_coco::sim::tdx::{SimKvmConfig, SimTdxModule, SimTdxVm, TdState, TdxModuleConfig};
/// let module = Arc::new(Mutex::new(SimTdxModule::new(TdxModuleConfig::default())));
/// let vm = SimTdxVm::new(module, SimKvmConfig::default());
/// assert_eq!(vm.td_state(), TdState::Uninitialized);
/// // A vCPU before KVM_TDX_INIT_VM: EIO.
/// vm.enable_split_irqchip().unwrap();
/// assert_eq!(vm.create_vcpu(0).unwrap_err().raw(), libc::EIO);
/// ```
#[derive(Clone)]
pub struct SimTdxVm {
    inner: Arc<VmInner>,
}

impl fmt::Debug for SimTdxVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTdxVm")
            .field("state", &self.td_state())
            .field("td", &self.td())
            .finish_non_exhaustive()
    }
}

/// A simulated vCPU of a [`SimTdxVm`].
#[derive(Clone)]
pub struct SimTdxVcpu {
    inner: Arc<VmInner>,
    id: u32,
}

impl fmt::Debug for SimTdxVcpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTdxVcpu")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `kvm_find_cpuid_entry2`: `index` matters only for entries flagged SIGNIFCANT_INDEX.
fn find_entry(entries: &[KvmCpuidEntry2], function: u32, index: u32) -> Option<&KvmCpuidEntry2> {
    entries.iter().find(|e| {
        e.function == function
            && (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || e.index == index)
    })
}

fn digest48(words: &[u64; 6]) -> [u8; 48] {
    let mut out = [0u8; 48];
    out.copy_from_slice(words.as_bytes());
    out
}

impl SimTdxVm {
    /// `KVM_CREATE_VM(KVM_X86_TDX_VM)` on a host whose TDX module is `module`.
    pub fn new(module: Arc<Mutex<SimTdxModule>>, kvm: SimKvmConfig) -> Self {
        let st = VmState {
            state: TdState::Uninitialized,
            td: None,
            bugged: false,
            attributes: 0,
            xfam: 0,
            shared_bit: 0,
            split_irqchip: false,
            vcpus: BTreeMap::new(),
            gmem: BTreeMap::new(),
            private: BTreeMap::new(),
            populated: BTreeSet::new(),
        };
        Self {
            inner: Arc::new(VmInner {
                module,
                kvm,
                st: Mutex::new(st),
            }),
        }
    }

    /// The TD state.
    pub fn td_state(&self) -> TdState {
        lock(&self.inner.st).state
    }

    /// The TD in the module, once KVM_TDX_INIT_VM succeeded.
    pub fn td(&self) -> Option<TdHandle> {
        lock(&self.inner.st).td
    }

    /// Whether a SEAMCALL failure marked the VM bugged (`KVM_BUG_ON`): every later call
    /// fails with `EIO`.
    pub fn is_bugged(&self) -> bool {
        lock(&self.inner.st).bugged
    }

    /// The module this VM runs on.
    pub fn module(&self) -> &Arc<Mutex<SimTdxModule>> {
        &self.inner.module
    }

    /// The shared-GPA bit (bit 47 or 51), once initialized.
    pub fn shared_bit(&self) -> u64 {
        lock(&self.inner.st).shared_bit
    }

    /// MRTD once finalized.
    pub fn mrtd(&self) -> Option<[u8; 48]> {
        let td = self.td()?;
        lock(&self.inner.module).mrtd(td)
    }

    /// What the host sees in the physical page behind private `gpa` (ciphertext), if the
    /// page was populated.
    pub fn host_read_private(&self, gpa: u64) -> Option<Page> {
        let td = self.td()?;
        lock(&self.inner.module).host_read_private(td, gpa)
    }

    /// `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)`, required before any TDX vCPU.
    ///
    /// # Errors
    /// `EINVAL` once a vCPU exists.
    pub fn enable_split_irqchip(&self) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        if !st.vcpus.is_empty() {
            return Err(EINVAL);
        }
        st.split_irqchip = true;
        Ok(())
    }

    /// `KVM_SET_USER_MEMORY_REGION2` with `KVM_MEM_GUEST_MEMFD` over `[gpa, gpa + size)`.
    ///
    /// # Errors
    /// `EINVAL` for an empty or misaligned range, `EEXIST` if it overlaps a slot.
    pub fn add_guest_memfd_region(&self, gpa: u64, size: u64) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        let end = gpa.checked_add(size).ok_or(EINVAL)?;
        if size == 0
            || !gpa.is_multiple_of(PAGE_SIZE as u64)
            || !size.is_multiple_of(PAGE_SIZE as u64)
        {
            return Err(EINVAL);
        }
        if st.gmem.range(..end).any(|(_, e)| *e > gpa) {
            return Err(EEXIST);
        }
        st.gmem.insert(gpa, end);
        Ok(())
    }

    /// `KVM_SET_MEMORY_ATTRIBUTES`: sets or clears `KVM_MEMORY_ATTRIBUTE_PRIVATE`.
    ///
    /// # Errors
    /// `EINVAL` for flags, unknown attributes, a misaligned, empty or overflowing range.
    pub fn set_memory_attributes(&self, a: &KvmMemoryAttributes) -> Result<(), Errno> {
        let end = a.address.checked_add(a.size).ok_or(EINVAL)?;
        if a.flags != 0 || a.attributes & !KVM_MEMORY_ATTRIBUTE_PRIVATE != 0 || a.size == 0 {
            return Err(EINVAL);
        }
        if !a.address.is_multiple_of(PAGE_SIZE as u64) || !a.size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(EINVAL);
        }
        let mut st = lock(&self.inner.st);
        ranges::set(&mut st.private, a.address, end, a.attributes != 0);
        Ok(())
    }

    /// `KVM_CREATE_VCPU`. TDX vCPUs are state-protected from creation unless the TD has
    /// ATTRIBUTES.DEBUG.
    ///
    /// # Errors
    /// `EIO` if the VM is bugged or the TD is not INITIALIZED (before INIT_VM or after
    /// FINALIZE); `EINVAL` without a split irqchip or for `id ≥ max_vcpus`; `EEXIST` for
    /// a duplicate id.
    pub fn create_vcpu(&self, id: u32) -> Result<SimTdxVcpu, Errno> {
        let mut st = lock(&self.inner.st);
        if st.bugged {
            return Err(EIO);
        }
        if id >= u32::from(self.inner.kvm.max_vcpus) {
            return Err(EINVAL);
        }
        if st.vcpus.contains_key(&id) {
            return Err(EEXIST);
        }
        if !st.split_irqchip {
            return Err(EINVAL);
        }
        if st.state != TdState::Initialized {
            return Err(EIO);
        }
        let protected = st.attributes & TDX_TD_ATTR_DEBUG == 0;
        st.vcpus.insert(
            id,
            VcpuSt {
                vp: None,
                initialized: false,
                protected,
            },
        );
        Ok(SimTdxVcpu {
            inner: self.inner.clone(),
            id,
        })
    }

    fn supported_attrs(&self, m: &SimTdxModule) -> u64 {
        let c = m.config();
        let v = self.inner.kvm.supported_td_attrs;
        if v & c.attributes_fixed1 != c.attributes_fixed1 {
            0
        } else {
            v & c.attributes_fixed0
        }
    }

    fn supported_xfam(&self, m: &SimTdxModule) -> u64 {
        let c = m.config();
        let v = self.inner.kvm.supported_xfam;
        if v & c.xfam_fixed1 != c.xfam_fixed1 {
            0
        } else {
            v & c.xfam_fixed0
        }
    }

    /// The VM-scope `KVM_MEMORY_ENCRYPT_OP` for TDX: `cmd` is the `kvm_tdx_cmd` (updated
    /// in place as the kernel copies it back) and `data` the buffer `cmd.data` points to
    /// (`kvm_tdx_capabilities` + entries, `kvm_tdx_init_vm` + entries, or nothing).
    ///
    /// # Errors
    /// The errno KVM returns; see the [module table](self).
    pub fn tdx_ioctl(&self, cmd: &mut KvmTdxCmd, data: &mut [u8]) -> Result<(), Errno> {
        if lock(&self.inner.st).bugged {
            return Err(EIO);
        }
        if cmd.hw_error != 0 {
            return Err(EINVAL);
        }
        match cmd.id {
            KVM_TDX_CAPABILITIES => self.capabilities_raw(cmd.flags, data),
            KVM_TDX_INIT_VM => self.init_vm_raw(cmd, data),
            KVM_TDX_FINALIZE_VM => self.finalize_raw(cmd),
            _ => Err(EINVAL),
        }
    }

    fn capabilities_raw(&self, flags: u32, data: &mut [u8]) -> Result<(), Errno> {
        if flags != 0 {
            return Err(EINVAL);
        }
        let hdr = size_of::<KvmTdxCapabilities>();
        let (mut caps, _) = KvmTdxCapabilities::read_from_prefix(data).map_err(|_| EFAULT)?;
        let m = lock(&self.inner.module);
        let configs: Vec<_> = m.config().cpuid_configs().copied().collect();
        if (caps.cpuid.nent as usize) < configs.len() {
            return Err(E2BIG);
        }
        let supported_attrs = self.supported_attrs(&m);
        let supported_xfam = self.supported_xfam(&m);
        if supported_attrs == 0 || supported_xfam == 0 {
            return Err(EIO);
        }
        caps = KvmTdxCapabilities::default();
        caps.supported_attrs = supported_attrs;
        caps.supported_xfam = supported_xfam;
        caps.user_tdvmcallinfo_1_r11 = TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT;
        caps.cpuid.nent = configs.len() as u32;
        let need = hdr + configs.len() * size_of::<KvmCpuidEntry2>();
        let out = data.get_mut(..need).ok_or(EFAULT)?;
        let (h, entries) = out.split_at_mut(hdr);
        h.copy_from_slice(caps.as_bytes());
        for (c, dst) in configs
            .iter()
            .zip(entries.chunks_exact_mut(size_of::<KvmCpuidEntry2>()))
        {
            let mask = c.configurable_mask();
            let mut e = KvmCpuidEntry2 {
                function: c.leaf,
                index: if c.subleaf == CPUID_NO_SUBLEAF {
                    0
                } else {
                    c.subleaf
                },
                flags: if c.subleaf == CPUID_NO_SUBLEAF {
                    0
                } else {
                    KVM_CPUID_FLAG_SIGNIFCANT_INDEX
                },
                eax: mask[0],
                ebx: mask[1],
                ecx: mask[2],
                edx: mask[3],
                ..Default::default()
            };
            if c.leaf == 0x8000_0008 {
                e.eax |= 0x00FF_0000;
            }
            if c.leaf == 7 && c.subleaf == 0 {
                e.ebx &= !((1 << 4) | (1 << 11)); // HLE, RTM
                e.ecx &= !(1 << 5); // WAITPKG
            }
            dst.copy_from_slice(e.as_bytes());
        }
        Ok(())
    }

    fn init_vm_raw(&self, cmd: &mut KvmTdxCmd, data: &[u8]) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        if st.state != TdState::Uninitialized {
            return Err(EINVAL);
        }
        if cmd.flags != 0 {
            return Err(EINVAL);
        }
        let hdr = size_of::<KvmTdxInitVm>();
        let (init, rest) = KvmTdxInitVm::read_from_prefix(data).map_err(|_| EFAULT)?;
        if init.cpuid.nent > KVM_MAX_CPUID_ENTRIES {
            return Err(E2BIG);
        }
        let n = init.cpuid.nent as usize;
        let (entries, _) = <[KvmCpuidEntry2]>::ref_from_prefix_with_elems(rest, n)
            .map(|(e, r)| (e.to_vec(), r))
            .map_err(|_| EFAULT)?;
        debug_assert!(data.len() >= hdr);
        if init.reserved.iter().any(|&r| r != 0) || init.cpuid.padding != 0 {
            return Err(EINVAL);
        }
        let mut module = lock(&self.inner.module);
        let params = self.setup_tdparams(&module, &init, &entries)?;
        // __tdx_td_init: key id, TDR, key configuration, TDCS pages, TDH.MNG.INIT.
        let hkid = module.free_hkid().ok_or(ENOSPC)?;
        let td = module.tdh_mng_create(hkid).map_err(|s| {
            cmd.hw_error = s.raw();
            EIO
        })?;
        let mut fail = |module: &mut SimTdxModule, s: TdxStatus, errno: Errno| {
            cmd.hw_error = s.raw();
            module.teardown(td);
            errno
        };
        for pkg in 0..module.config().num_packages {
            if let Err(s) = module.tdh_mng_key_config(td, pkg) {
                return Err(fail(&mut module, s, EIO));
            }
        }
        for _ in 0..MIN_NUM_TDCS_PAGES {
            if let Err(s) = module.tdh_mng_addcx(td) {
                return Err(fail(&mut module, s, EIO));
            }
        }
        if let Err((s, _rcx)) = module.tdh_mng_init(td, &params) {
            let errno = if s.code() == TdxStatus::OPERAND_INVALID {
                EINVAL
            } else {
                EIO
            };
            return Err(fail(&mut module, s, errno));
        }
        let gpaw52 = params.config_flags.get() & TDX_CONFIG_FLAGS_MAX_GPAW != 0;
        st.td = Some(td);
        st.state = TdState::Initialized;
        st.attributes = params.attributes.get();
        st.xfam = params.xfam.get();
        st.shared_bit = if gpaw52 { 1 << 51 } else { 1 << 47 };
        Ok(())
    }

    /// `setup_tdparams`: TD_PARAMS from `kvm_tdx_init_vm` and KVM's own settings.
    fn setup_tdparams(
        &self,
        m: &SimTdxModule,
        init: &KvmTdxInitVm,
        entries: &[KvmCpuidEntry2],
    ) -> Result<TdParams, Errno> {
        let c = m.config();
        if init.attributes & !self.supported_attrs(m) != 0
            || init.xfam & !self.supported_xfam(m) != 0
        {
            return Err(EINVAL);
        }
        let mut p = TdParams {
            max_vcpus: self.inner.kvm.max_vcpus.into(),
            attributes: (init.attributes | c.attributes_fixed1).into(),
            xfam: (init.xfam | c.xfam_fixed1).into(),
            ..TdParams::default()
        };
        let mut flags = TDX_CONFIG_FLAGS_NO_RBP_MOD;
        p.tsc_frequency = u16::try_from(self.inner.kvm.tsc_khz / 25_000)
            .unwrap_or(u16::MAX)
            .into();
        // EPT controls from the guest physical address width (0x80000008.EAX[23:16]).
        let e = find_entry(entries, 0x8000_0008, 0).ok_or(EINVAL)?;
        let guest_pa = (e.eax >> 16) & 0xFF;
        if (guest_pa != 48 && guest_pa != 52) || (guest_pa == 52 && !self.inner.kvm.ept_5level) {
            return Err(EINVAL);
        }
        let eptp = if guest_pa == 52 {
            flags |= TDX_CONFIG_FLAGS_MAX_GPAW;
            VMX_EPTP_MT_WB | VMX_EPTP_PWL_5
        } else {
            VMX_EPTP_MT_WB | VMX_EPTP_PWL_4
        };
        p.eptp_controls = eptp.into();
        p.config_flags = flags.into();
        // CPUID values, in the module's CPUID_CONFIG order; every user leaf must be one.
        let mut copied = 0usize;
        for (slot, cfg) in c.cpuid_configs().enumerate() {
            let index = if cfg.subleaf == CPUID_NO_SUBLEAF {
                0
            } else {
                cfg.subleaf
            };
            let Some(e) = find_entry(entries, cfg.leaf, index) else {
                continue;
            };
            copied += 1;
            let mut regs = [e.eax, e.ebx, e.ecx, e.edx];
            if cfg.leaf == 0x8000_0008 {
                regs[0] &= !0x00FF_0000;
            }
            if let Some(v) = p.cpuid_config_vals.get_mut(slot) {
                *v = super::params::CpuidConfigValue::from_regs(regs);
            }
        }
        if copied != entries.len() {
            return Err(EINVAL);
        }
        p.mr_config_id = digest48(&init.mrconfigid);
        p.mr_owner = digest48(&init.mrowner);
        p.mr_owner_config = digest48(&init.mrownerconfig);
        Ok(p)
    }

    fn finalize_raw(&self, cmd: &mut KvmTdxCmd) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        let td = match (st.td, st.state) {
            (Some(td), s) if s != TdState::Runnable => td,
            _ => return Err(EINVAL),
        };
        let r = lock(&self.inner.module).tdh_mr_finalize(td);
        if let Err(s) = r {
            cmd.hw_error = s.raw();
            if s.code() == TdxStatus::OPERAND_BUSY {
                return Err(Errno::from_raw(libc::EBUSY));
            }
            st.bugged = true;
            return Err(EIO);
        }
        st.state = TdState::Runnable;
        Ok(())
    }

    fn typed(&self, id: TdxCmdId, flags: u32, data: &mut [u8]) -> Result<(), KvmTdxError> {
        let mut cmd = KvmTdxCmd::new(id, flags, 0);
        self.tdx_ioctl(&mut cmd, data).map_err(|errno| KvmTdxError {
            cmd: id,
            errno,
            hw_error: TdxStatus(cmd.hw_error),
        })
    }

    /// KVM_TDX_CAPABILITIES into `buf` (its `cpuid.nent` must be set to the capacity).
    ///
    /// # Errors
    /// `E2BIG` (nent untouched) if `nent` is below the module's configurable-leaf count.
    pub fn capabilities(&self, buf: &mut TdxCapabilitiesBuf) -> Result<(), KvmTdxError> {
        self.typed(TdxCmdId::Capabilities, 0, buf.as_mut_bytes())
    }

    /// KVM_TDX_INIT_VM.
    ///
    /// # Errors
    /// See the [module table](self); `hw_error` carries TDH.MNG.INIT's status.
    pub fn init_vm(&self, buf: &mut TdxInitVmBuf) -> Result<(), KvmTdxError> {
        self.typed(TdxCmdId::InitVm, 0, buf.as_mut_bytes())
    }

    /// KVM_TDX_FINALIZE_VM.
    ///
    /// # Errors
    /// `EINVAL` before INIT_VM or after FINALIZE; `EIO` with TDH.MR.FINALIZE's status in
    /// `hw_error` otherwise (e.g. `TDX_NO_VCPUS`), which also bugs the VM.
    pub fn finalize(&self) -> Result<(), KvmTdxError> {
        self.typed(TdxCmdId::FinalizeVm, 0, &mut [])
    }
}

impl SimTdxVcpu {
    /// The vCPU id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The module's vCPU, once KVM_TDX_INIT_VCPU created it.
    pub fn vp(&self) -> Option<VpHandle> {
        lock(&self.inner.st).vcpus.get(&self.id).and_then(|v| v.vp)
    }

    /// Whether the register state is protected (`guest_state_protected`).
    pub fn is_state_protected(&self) -> bool {
        lock(&self.inner.st)
            .vcpus
            .get(&self.id)
            .is_some_and(|v| v.protected)
    }

    /// The generic register-ioctl gate (`KVM_GET/SET_REGS`, `SREGS`, `FPU`, `XSAVE`,
    /// `XCRS`, `DEBUGREGS`, `KVM_SET_GUEST_DEBUG`…) on a TD: refused while protected.
    ///
    /// # Errors
    /// `EINVAL` when the vCPU's state is protected.
    pub fn register_access(&self, op: RegisterOp) -> Result<(), Errno> {
        let _ = op;
        if self.is_state_protected() {
            Err(EINVAL)
        } else {
            Ok(())
        }
    }

    /// `KVM_RUN`: the entry checks, then TDH.VP.ENTER (the model runs no guest code).
    ///
    /// # Errors
    /// `EINVAL` before FINALIZE or before this vCPU's INIT_VCPU; `EIO` if the VM is bugged.
    pub fn run(&self) -> Result<(), Errno> {
        self.run_with_sync_regs(0, 0)
    }

    /// `KVM_RUN` with `kvm_run.kvm_valid_regs` / `kvm_dirty_regs` set: a TD has protected
    /// state, so its valid sync-regs mask is 0 and any bit is refused before the other
    /// checks.
    ///
    /// # Errors
    /// `EINVAL` for any sync-regs bit; otherwise as [`run`](Self::run).
    pub fn run_with_sync_regs(&self, valid_regs: u64, dirty_regs: u64) -> Result<(), Errno> {
        if valid_regs != 0 || dirty_regs != 0 {
            return Err(EINVAL);
        }
        let st = lock(&self.inner.st);
        if st.bugged {
            return Err(EIO);
        }
        let v = st.vcpus.get(&self.id).ok_or(EINVAL)?;
        if st.state != TdState::Runnable || !v.initialized {
            return Err(EINVAL);
        }
        let vp = v.vp.ok_or(EINVAL)?;
        lock(&self.inner.module).tdh_vp_enter(vp).map_err(|_| EIO)
    }

    /// The vCPU-scope `KVM_MEMORY_ENCRYPT_OP` for TDX: `data` is the buffer `cmd.data`
    /// points to (`kvm_tdx_init_mem_region`, `kvm_cpuid2` + entries; nothing for
    /// INIT_VCPU, whose `data` is the initial RCX); `user` resolves INIT_MEM_REGION's
    /// `source_addr`.
    ///
    /// # Errors
    /// The errno KVM returns; see the [module table](self).
    pub fn tdx_ioctl(
        &self,
        cmd: &mut KvmTdxCmd,
        data: &mut [u8],
        user: &dyn UserMemory,
    ) -> Result<(), Errno> {
        {
            let st = lock(&self.inner.st);
            if st.bugged {
                return Err(EIO);
            }
            if cmd.hw_error != 0 {
                return Err(EINVAL);
            }
            if st.td.is_none() || st.state == TdState::Runnable {
                return Err(EINVAL);
            }
        }
        match cmd.id {
            KVM_TDX_INIT_VCPU => self.init_raw(cmd),
            KVM_TDX_INIT_MEM_REGION => self.init_mem_region_raw(cmd, data, user),
            KVM_TDX_GET_CPUID => self.get_cpuid_raw(data),
            _ => Err(EINVAL),
        }
    }

    fn init_raw(&self, cmd: &KvmTdxCmd) -> Result<(), Errno> {
        if cmd.flags != 0 {
            return Err(EINVAL);
        }
        let mut st = lock(&self.inner.st);
        let td = st.td.ok_or(EINVAL)?;
        let v = st.vcpus.get_mut(&self.id).ok_or(EINVAL)?;
        if v.initialized {
            return Err(EINVAL);
        }
        let mut m = lock(&self.inner.module);
        let extra = m.config().tdvps_pages.saturating_sub(1);
        let vp = m.tdh_vp_create(td).map_err(|_| EIO)?;
        for _ in 0..extra {
            m.tdh_vp_addcx(vp).map_err(|_| EIO)?;
        }
        m.tdh_vp_init(vp, cmd.data).map_err(|_| EIO)?;
        v.vp = Some(vp);
        v.initialized = true;
        Ok(())
    }

    fn init_mem_region_raw(
        &self,
        cmd: &KvmTdxCmd,
        data: &mut [u8],
        user: &dyn UserMemory,
    ) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        if !st.vcpus.get(&self.id).is_some_and(|v| v.initialized) {
            return Err(EINVAL);
        }
        if st.state == TdState::Runnable {
            return Err(EINVAL);
        }
        if u64::from(cmd.flags) & !KVM_TDX_MEASURE_MEMORY_REGION != 0 {
            return Err(EINVAL);
        }
        let measure = u64::from(cmd.flags) & KVM_TDX_MEASURE_MEMORY_REGION != 0;
        let (mut region, _) = KvmTdxInitMemRegion::read_from_prefix(data).map_err(|_| EFAULT)?;
        let page = PAGE_SIZE as u64;
        let len = region.nr_pages.checked_mul(page);
        let end = len.and_then(|l| region.gpa.checked_add(l));
        let private = |gpa: u64| gpa & st.shared_bit == 0;
        let ok = region.source_addr != 0
            && region.source_addr.is_multiple_of(page)
            && region.gpa.is_multiple_of(page)
            && region.nr_pages != 0
            && end.is_some_and(|e| e > region.gpa && private(region.gpa) && private(e - 1));
        if !ok {
            return Err(EINVAL);
        }
        let td = st.td.ok_or(EINVAL)?;
        let mut ret = Ok(());
        while region.nr_pages != 0 {
            if let Err(e) =
                self.populate_one(&mut st, td, region.gpa, region.source_addr, measure, user)
            {
                ret = Err(e);
                break;
            }
            region.source_addr = region.source_addr.wrapping_add(page);
            region.gpa += page;
            region.nr_pages -= 1;
        }
        region.write_to_prefix(data).map_err(|_| EFAULT)?;
        ret
    }

    /// One page of `kvm_gmem_populate` + `tdx_gmem_post_populate`.
    fn populate_one(
        &self,
        st: &mut VmState,
        td: TdHandle,
        gpa: u64,
        src: u64,
        measure: bool,
        user: &dyn UserMemory,
    ) -> Result<(), Errno> {
        if !ranges::contains(&st.gmem, gpa) || !ranges::contains(&st.private, gpa) {
            return Err(EINVAL);
        }
        if st.populated.contains(&gpa) {
            return Err(EEXIST);
        }
        let mut buf = [0u8; PAGE_SIZE];
        user.read(src, &mut buf)?;
        let mut m = lock(&self.inner.module);
        let bug = |st: &mut VmState| {
            st.bugged = true;
            EIO
        };
        // The TDP MMU adds missing Secure-EPT levels, parent first, then maps the leaf.
        let levels = m.ept_levels(td).unwrap_or(4);
        for level in (1..levels).rev() {
            if !m.sept_present(td, gpa, level) && m.tdh_mem_sept_add(td, gpa, level).is_err() {
                return Err(bug(st));
            }
        }
        if m.tdh_mem_page_add(td, gpa, &buf).is_err() {
            return Err(bug(st));
        }
        st.populated.insert(gpa);
        if measure {
            for off in (0..PAGE_SIZE as u64).step_by(TDX_EXTEND_CHUNK) {
                if m.tdh_mr_extend(td, gpa + off).is_err() {
                    return Err(bug(st));
                }
            }
        }
        Ok(())
    }

    fn get_cpuid_raw(&self, data: &mut [u8]) -> Result<(), Errno> {
        let (hdr, _) = KvmCpuid2::read_from_prefix(data).map_err(|_| EFAULT)?;
        let st = lock(&self.inner.st);
        let td = st.td.ok_or(EINVAL)?;
        let g_maxpa = st.shared_bit.trailing_zeros() + 1;
        drop(st);
        let m = lock(&self.inner.module);
        let cfg = m.td_config(td).ok_or(EIO)?;
        let mut out: Vec<KvmCpuidEntry2> = Vec::new();
        let mut emit = |leaf: u32| {
            let mut subs: Vec<_> = cfg.cpuid.iter().filter(|c| c.0 == leaf).collect();
            subs.sort_by_key(|c| c.1);
            for (l, sub, r) in subs {
                let mut e = KvmCpuidEntry2 {
                    function: *l,
                    eax: r[0],
                    ebx: r[1],
                    ecx: r[2],
                    edx: r[3],
                    ..Default::default()
                };
                if *sub != CPUID_NO_SUBLEAF {
                    e.index = *sub;
                    e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
                }
                if *l == 0x8000_0008 {
                    e.eax = (e.eax & !0x00FF_0000) | (g_maxpa << 16);
                }
                out.push(e);
            }
        };
        let max_basic = m
            .td_cpuid(td, 0, CPUID_NO_SUBLEAF)
            .or_else(|| m.td_cpuid(td, 0, 0))
            .ok_or(EIO)?[0];
        for leaf in 0..=max_basic.min(0xFF) {
            emit(leaf);
        }
        let max_ext = m.td_cpuid(td, 0x8000_0000, CPUID_NO_SUBLEAF).ok_or(EIO)?[0];
        for leaf in 0x8000_0000..=max_ext.clamp(0x8000_0000, 0x8000_00FF) {
            emit(leaf);
        }
        let need = out.len() as u32;
        let too_small = hdr.nent < need;
        let new_hdr = KvmCpuid2 {
            nent: need,
            padding: hdr.padding,
        };
        new_hdr.write_to_prefix(data).map_err(|_| EFAULT)?;
        if too_small {
            return Err(E2BIG);
        }
        let bytes = out.as_bytes();
        let dst = data.get_mut(8..8 + bytes.len()).ok_or(EFAULT)?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    fn typed(
        &self,
        id: TdxCmdId,
        flags: u32,
        imm: u64,
        data: &mut [u8],
        user: &dyn UserMemory,
    ) -> Result<(), KvmTdxError> {
        let mut cmd = KvmTdxCmd::new(id, flags, imm);
        self.tdx_ioctl(&mut cmd, data, user)
            .map_err(|errno| KvmTdxError {
                cmd: id,
                errno,
                hw_error: TdxStatus(cmd.hw_error),
            })
    }

    /// KVM_TDX_INIT_VCPU with initial guest RCX `rcx`: TDH.VP.CREATE, TDH.VP.ADDCX…,
    /// TDH.VP.INIT.
    ///
    /// # Errors
    /// `EINVAL` before INIT_VM, after FINALIZE, or on a second call.
    pub fn init(&self, rcx: u64) -> Result<(), KvmTdxError> {
        self.typed(TdxCmdId::InitVcpu, 0, rcx, &mut [], &UserSpace::new())
    }

    /// KVM_TDX_INIT_MEM_REGION: adds `region.nr_pages` pages from user memory at
    /// `region.source_addr` to `region.gpa`, one page at a time (PAGE.ADD, then with
    /// `measure` 16 MR.EXTENDs), and leaves the remaining range in `region`.
    ///
    /// # Errors
    /// See the [module table](self).
    pub fn init_mem_region(
        &self,
        region: &mut KvmTdxInitMemRegion,
        measure: bool,
        user: &dyn UserMemory,
    ) -> Result<(), KvmTdxError> {
        let flags = if measure {
            KVM_TDX_MEASURE_MEMORY_REGION as u32
        } else {
            0
        };
        self.typed(
            TdxCmdId::InitMemRegion,
            flags,
            0,
            region.as_mut_bytes(),
            user,
        )
    }

    /// KVM_TDX_GET_CPUID into `buf` (set `nent` to its capacity first).
    ///
    /// # Errors
    /// `E2BIG` with the needed count written to `nent`; `EINVAL` after FINALIZE.
    pub fn get_cpuid(&self, buf: &mut CpuidFam<KvmCpuid2, Vec<u64>>) -> Result<(), KvmTdxError> {
        self.typed(
            TdxCmdId::GetCpuid,
            0,
            0,
            buf.as_mut_bytes(),
            &UserSpace::new(),
        )
    }
}
