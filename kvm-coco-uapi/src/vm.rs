//! VM types, the capabilities that gate confidential computing, the `KVM_MEMORY_ENCRYPT_*`
//! ioctls and the `/dev/kvm` device attributes of group [`KVM_X86_GRP_SEV`].
//!
//! A confidential VM is chosen at `KVM_CREATE_VM` time by its *type* ([`VmType`]); which
//! types the host accepts is the bitmap returned by
//! `ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)` ([`VmTypes`]). All SEV and TDX
//! sub-commands then go through one ioctl, [`KVM_MEMORY_ENCRYPT_OP`], whose argument is a
//! pointer to [`crate::KvmSevCmd`] or [`crate::KvmTdxCmd`].

use crate::ioctl::{KVMIO, io, ior, iow, iowr};
use core::fmt;

uapi_consts! { VM_TYPES;
    /// `KVM_X86_DEFAULT_VM` (0): an ordinary VM. Legacy `KVM_SEV_INIT` / `KVM_SEV_ES_INIT`
    /// work only on this type.
    pub const KVM_X86_DEFAULT_VM: u32 = 0;
    /// `KVM_X86_SW_PROTECTED_VM` (1): guest_memfd-backed private memory without hardware
    /// protection. Development/testing only; its ABI is documented as unstable. Offered
    /// only with `CONFIG_KVM_SW_PROTECTED_VM` and the TDP MMU.
    pub const KVM_X86_SW_PROTECTED_VM: u32 = 1;
    /// `KVM_X86_SEV_VM` (2): an SEV guest; `KVM_SEV_INIT2` is mandatory before `KVM_RUN`.
    pub const KVM_X86_SEV_VM: u32 = 2;
    /// `KVM_X86_SEV_ES_VM` (3): SEV-ES; register state is protected (register ioctls are
    /// refused once the VMSAs are encrypted). Disappears from [`KVM_CAP_VM_TYPES`] when SNP
    /// is initialized on firmware patched for AMD-SB-3023.
    pub const KVM_X86_SEV_ES_VM: u32 = 3;
    /// `KVM_X86_SNP_VM` (4): SEV-SNP; protected state and guest_memfd private memory.
    /// `KVM_PRE_FAULT_MEMORY` is refused until SNP_LAUNCH_FINISH succeeds.
    pub const KVM_X86_SNP_VM: u32 = 4;
    /// `KVM_X86_TDX_VM` (5): an Intel TDX trust domain; protected state, protected EOI,
    /// private memory; the guest PAT is honoured. Pre-fault only after FINALIZE_VM.
    pub const KVM_X86_TDX_VM: u32 = 5;
}

uapi_consts! { CAPS;
    /// `KVM_CAP_VM_COPY_ENC_CONTEXT_FROM` (197): create an SEV *mirror* VM sharing another
    /// VM's encryption context. A mirror VM may only use LAUNCH_UPDATE_VMSA, GUEST_STATUS and
    /// DBG_DECRYPT/ENCRYPT (`-EINVAL` for anything else).
    pub const KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: u32 = 197;
    /// `KVM_CAP_EXIT_HYPERCALL` (201): the mask of hypercalls that may exit to user space
    /// (`1 << KVM_HC_MAP_GPA_RANGE` = 0x1000). Enable with `KVM_ENABLE_CAP`, `args[0]` a
    /// subset of the mask. Without it, SNP page-state changes and TDX MapGPA fail in the
    /// guest instead of exiting.
    pub const KVM_CAP_EXIT_HYPERCALL: u32 = 201;
    /// `KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM` (206): SEV intra-host migration.
    pub const KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: u32 = 206;
    /// `KVM_CAP_USER_MEMORY2` (231): `KVM_SET_USER_MEMORY_REGION2` exists.
    pub const KVM_CAP_USER_MEMORY2: u32 = 231;
    /// `KVM_CAP_MEMORY_FAULT_INFO` (232): `KVM_EXIT_MEMORY_FAULT` is reported.
    pub const KVM_CAP_MEMORY_FAULT_INFO: u32 = 232;
    /// `KVM_CAP_MEMORY_ATTRIBUTES` (233): the supported memory attributes (on a VM: 8,
    /// PRIVATE, if the VM has private memory, else 0; on `/dev/kvm`: 8).
    pub const KVM_CAP_MEMORY_ATTRIBUTES: u32 = 233;
    /// `KVM_CAP_GUEST_MEMFD` (234): `KVM_CREATE_GUEST_MEMFD` exists (returns 1).
    pub const KVM_CAP_GUEST_MEMFD: u32 = 234;
    /// `KVM_CAP_VM_TYPES` (235): the bitmap of accepted VM types, see [`VmTypes`].
    pub const KVM_CAP_VM_TYPES: u32 = 235;
    /// `KVM_CAP_PRE_FAULT_MEMORY` (236): `KVM_PRE_FAULT_MEMORY` exists.
    pub const KVM_CAP_PRE_FAULT_MEMORY: u32 = 236;
    /// `KVM_CAP_GUEST_MEMFD_FLAGS` (244): the supported `kvm_create_guest_memfd.flags`
    /// (MMAP always; INIT_SHARED where the architecture supports it).
    pub const KVM_CAP_GUEST_MEMFD_FLAGS: u32 = 244;
}

uapi_consts! { DEVICE_ATTRS;
    /// `KVM_X86_GRP_SYSTEM` (0): vendor-independent `/dev/kvm` attributes.
    pub const KVM_X86_GRP_SYSTEM: u32 = 0;
    /// `KVM_X86_XCOMP_GUEST_SUPP` (group 0, attr 0): the supported guest XCR0/XCOMP mask.
    pub const KVM_X86_XCOMP_GUEST_SUPP: u64 = 0;
    /// `KVM_X86_GRP_SEV` (1): SEV attributes on `/dev/kvm` (system fd). Intel hosts have
    /// no handler and answer `-ENXIO`; so does an unknown attribute.
    pub const KVM_X86_GRP_SEV: u32 = 1;
    /// `KVM_X86_SEV_VMSA_FEATURES` (group 1, attr 0): the `u64` mask accepted in
    /// [`crate::KvmSevInit::vmsa_features`] (see [`crate::VmsaFeatures`]). If the attribute
    /// is missing (old kernel) only the legacy `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` exist.
    pub const KVM_X86_SEV_VMSA_FEATURES: u64 = 0;
    /// `KVM_X86_SNP_POLICY_BITS` (group 1, attr 1): the `u64` mask of SNP policy bits
    /// SNP_LAUNCH_START accepts (0 without SNP). Feed it to
    /// [`crate::SnpPolicy::validate`]. Not mentioned in the kernel's SEV documentation.
    pub const KVM_X86_SNP_POLICY_BITS: u64 = 1;
    /// `KVM_X86_SEV_SNP_REQ_CERTS` (group 1, attr 2): 1 if the `KVM_EXIT_SNP_REQ_CERTS`
    /// flow is available (SNP enabled). New in Linux 7.0.
    pub const KVM_X86_SEV_SNP_REQ_CERTS: u64 = 2;
}

uapi_consts! { IOCTLS;
    /// `KVM_API_VERSION` (12): what `KVM_GET_API_VERSION` must return.
    pub const KVM_API_VERSION: u32 = 12;
    /// `KVM_GET_API_VERSION` = `_IO(KVMIO, 0x00)` (system fd).
    pub const KVM_GET_API_VERSION: u32 = io(KVMIO, 0x00);
    /// `KVM_GET_VCPU_MMAP_SIZE` = `_IO(KVMIO, 0x04)` (system fd): the size to `mmap` a vCPU
    /// fd with to reach its `kvm_run` ([`crate::exit`]).
    pub const KVM_GET_VCPU_MMAP_SIZE: u32 = io(KVMIO, 0x04);
    /// `KVM_CREATE_VM` = `_IO(KVMIO, 0x01)` (system fd); the argument is the VM type.
    /// Types outside [`KVM_CAP_VM_TYPES`] give `-EINVAL`.
    pub const KVM_CREATE_VM: u32 = io(KVMIO, 0x01);
    /// `KVM_CHECK_EXTENSION` = `_IO(KVMIO, 0x03)` (system or VM fd; the VM answer is the
    /// VM-specific one).
    pub const KVM_CHECK_EXTENSION: u32 = io(KVMIO, 0x03);
    /// `KVM_GET_SUPPORTED_CPUID` = `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)` (system fd).
    pub const KVM_GET_SUPPORTED_CPUID: u32 =
        iowr(KVMIO, 0x05, core::mem::size_of::<crate::KvmCpuid2>());
    /// `KVM_CREATE_VCPU` = `_IO(KVMIO, 0x41)` (VM fd).
    pub const KVM_CREATE_VCPU: u32 = io(KVMIO, 0x41);
    /// `KVM_RUN` = `_IO(KVMIO, 0x80)` (vCPU fd).
    pub const KVM_RUN: u32 = io(KVMIO, 0x80);
    /// `KVM_SET_CPUID2` = `_IOW(KVMIO, 0x90, struct kvm_cpuid2)` (vCPU fd).
    pub const KVM_SET_CPUID2: u32 = iow(KVMIO, 0x90, core::mem::size_of::<crate::KvmCpuid2>());
    /// `KVM_SET_TSC_KHZ` = `_IO(KVMIO, 0xa2)`; on the VM fd it sets the default that SNP
    /// SECURE_TSC passes to the firmware at SNP_LAUNCH_START.
    pub const KVM_SET_TSC_KHZ: u32 = io(KVMIO, 0xa2);
    /// `KVM_ENABLE_CAP` = `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)` (VM or vCPU fd).
    pub const KVM_ENABLE_CAP: u32 = iow(KVMIO, 0xa3, core::mem::size_of::<KvmEnableCap>());
    /// `KVM_MEMORY_ENCRYPT_OP` = `_IOWR(KVMIO, 0xba, unsigned long)` = **0xC008AEBA**.
    ///
    /// VM fd (SEV and TDX sub-commands) and vCPU fd (TDX only). The encoded size is 8, the
    /// size of a pointer, *not* that of [`crate::KvmSevCmd`] / [`crate::KvmTdxCmd`]. On AMD
    /// a NULL argument returns 0 (a probe for "SEV enabled"); on Intel a non-TD VM gets
    /// `-ENOTTY`.
    pub const KVM_MEMORY_ENCRYPT_OP: u32 = iowr(KVMIO, 0xba, 8);
    /// `KVM_MEMORY_ENCRYPT_REG_REGION` = `_IOR(KVMIO, 0xbb, struct kvm_enc_region)` =
    /// 0x8010AEBB (VM fd, SEV/SEV-ES). Declared `_IOR` although the argument is input only.
    ///
    /// Pins the pages long-term, accounted against `RLIMIT_MEMLOCK` unless `CAP_IPC_LOCK`
    /// (`-ENOMEM` over the limit); `size == 0` or overflow gives `-EINVAL`.
    pub const KVM_MEMORY_ENCRYPT_REG_REGION: u32 =
        ior(KVMIO, 0xbb, core::mem::size_of::<KvmEncRegion>());
    /// `KVM_MEMORY_ENCRYPT_UNREG_REGION` = `_IOR(KVMIO, 0xbc, struct kvm_enc_region)` =
    /// 0x8010AEBC. Needs the exact `(addr, size)` of a registered region (`-EINVAL`).
    pub const KVM_MEMORY_ENCRYPT_UNREG_REGION: u32 =
        ior(KVMIO, 0xbc, core::mem::size_of::<KvmEncRegion>());
    /// `KVM_SET_DEVICE_ATTR` = `_IOW(KVMIO, 0xe1, struct kvm_device_attr)` = 0x4018AEE1.
    pub const KVM_SET_DEVICE_ATTR: u32 =
        iow(KVMIO, 0xe1, core::mem::size_of::<KvmDeviceAttr>());
    /// `KVM_GET_DEVICE_ATTR` = `_IOW(KVMIO, 0xe2, struct kvm_device_attr)` = 0x4018AEE2.
    /// On `/dev/kvm` with [`KVM_X86_GRP_SEV`] the value is written as a `u64` to `addr`.
    pub const KVM_GET_DEVICE_ATTR: u32 =
        iow(KVMIO, 0xe2, core::mem::size_of::<KvmDeviceAttr>());
    /// `KVM_HAS_DEVICE_ATTR` = `_IOW(KVMIO, 0xe3, struct kvm_device_attr)` = 0x4018AEE3.
    pub const KVM_HAS_DEVICE_ATTR: u32 =
        iow(KVMIO, 0xe3, core::mem::size_of::<KvmDeviceAttr>());
}

uapi_structs! { STRUCTS;
    /// Argument of [`KVM_MEMORY_ENCRYPT_REG_REGION`] / [`KVM_MEMORY_ENCRYPT_UNREG_REGION`]
    /// (`struct kvm_enc_region`, 16 bytes): a user-space range whose pages KVM pins for an
    /// SEV/SEV-ES guest.
    #[repr(C)]
    pub struct KvmEncRegion as "kvm_enc_region" {
        /// User virtual address of the range.
        pub addr: u64,
        /// Length in bytes (non-zero).
        pub size: u64,
    }

    /// Argument of `KVM_{SET,GET,HAS}_DEVICE_ATTR` (`struct kvm_device_attr`, 24 bytes).
    #[repr(C)]
    pub struct KvmDeviceAttr as "kvm_device_attr" {
        /// No flags are defined: 0.
        pub flags: u32,
        /// Attribute group, e.g. [`KVM_X86_GRP_SEV`].
        pub group: u32,
        /// Attribute within the group, e.g. [`KVM_X86_SNP_POLICY_BITS`].
        pub attr: u64,
        /// User address of the value (a `u64` for the x86 system attributes).
        pub addr: u64,
    }

    /// Argument of [`KVM_ENABLE_CAP`] (`struct kvm_enable_cap`, 104 bytes).
    #[repr(C)]
    pub struct KvmEnableCap as "kvm_enable_cap" {
        /// The capability, e.g. [`KVM_CAP_EXIT_HYPERCALL`].
        pub cap: u32,
        /// Must be 0 for the capabilities used here.
        pub flags: u32,
        /// Capability-specific arguments.
        pub args: [u64; 4],
        /// Reserved.
        pub pad: [u8; 64],
    }
}

/// A VM type accepted by `KVM_CREATE_VM` on x86 (the `KVM_X86_*_VM` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum VmType {
    /// [`KVM_X86_DEFAULT_VM`]
    Default = KVM_X86_DEFAULT_VM,
    /// [`KVM_X86_SW_PROTECTED_VM`]
    SwProtected = KVM_X86_SW_PROTECTED_VM,
    /// [`KVM_X86_SEV_VM`]
    Sev = KVM_X86_SEV_VM,
    /// [`KVM_X86_SEV_ES_VM`]
    SevEs = KVM_X86_SEV_ES_VM,
    /// [`KVM_X86_SNP_VM`]
    Snp = KVM_X86_SNP_VM,
    /// [`KVM_X86_TDX_VM`]
    Tdx = KVM_X86_TDX_VM,
}

impl VmType {
    /// Every type, in numeric order.
    pub const ALL: [Self; 6] = [
        Self::Default,
        Self::SwProtected,
        Self::Sev,
        Self::SevEs,
        Self::Snp,
        Self::Tdx,
    ];

    /// Decodes a raw type; `None` for values Linux 7.3 does not define.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            KVM_X86_DEFAULT_VM => Some(Self::Default),
            KVM_X86_SW_PROTECTED_VM => Some(Self::SwProtected),
            KVM_X86_SEV_VM => Some(Self::Sev),
            KVM_X86_SEV_ES_VM => Some(Self::SevEs),
            KVM_X86_SNP_VM => Some(Self::Snp),
            KVM_X86_TDX_VM => Some(Self::Tdx),
            _ => None,
        }
    }

    /// The raw value passed to `KVM_CREATE_VM`.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// The kernel name, e.g. `"KVM_X86_SNP_VM"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Default => "KVM_X86_DEFAULT_VM",
            Self::SwProtected => "KVM_X86_SW_PROTECTED_VM",
            Self::Sev => "KVM_X86_SEV_VM",
            Self::SevEs => "KVM_X86_SEV_ES_VM",
            Self::Snp => "KVM_X86_SNP_VM",
            Self::Tdx => "KVM_X86_TDX_VM",
        }
    }

    /// This type's bit in the [`KVM_CAP_VM_TYPES`] bitmap.
    pub const fn bit(self) -> VmTypes {
        VmTypes::from_bits_retain(1 << self.raw())
    }
}

impl fmt::Display for VmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

bitflags::bitflags! {
    /// The [`KVM_CAP_VM_TYPES`] bitmap: bit *n* set means `KVM_CREATE_VM(n)` is accepted.
    ///
    /// The kernel's check is `type < 32 && (mask & BIT(type))`. DEFAULT is always set;
    /// SEV-ES may be *absent* on an SNP host with AMD-SB-3023 firmware even though the CPU
    /// supports it. Unknown bits are kept (`from_bits_retain`).
    ///
    /// ```
    /// use kvm_coco_uapi::{VmType, VmTypes};
    /// let caps = VmTypes::from_bits_retain(0b1_0101); // as returned by KVM_CHECK_EXTENSION
    /// assert!(caps.supports(VmType::Snp));
    /// assert!(!caps.supports(VmType::SevEs));
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct VmTypes: u32 {
        /// `1 << KVM_X86_DEFAULT_VM`
        const DEFAULT = 1 << KVM_X86_DEFAULT_VM;
        /// `1 << KVM_X86_SW_PROTECTED_VM`
        const SW_PROTECTED = 1 << KVM_X86_SW_PROTECTED_VM;
        /// `1 << KVM_X86_SEV_VM`
        const SEV = 1 << KVM_X86_SEV_VM;
        /// `1 << KVM_X86_SEV_ES_VM`
        const SEV_ES = 1 << KVM_X86_SEV_ES_VM;
        /// `1 << KVM_X86_SNP_VM`
        const SNP = 1 << KVM_X86_SNP_VM;
        /// `1 << KVM_X86_TDX_VM`
        const TDX = 1 << KVM_X86_TDX_VM;
    }
}

impl VmTypes {
    /// Interprets the (non-negative) `KVM_CHECK_EXTENSION` return value.
    pub const fn from_check_extension(ret: i32) -> Self {
        Self::from_bits_retain(ret as u32)
    }

    /// Whether `KVM_CREATE_VM(ty)` is accepted.
    pub const fn supports(self, ty: VmType) -> bool {
        self.bits() & ty.bit().bits() != 0
    }

    /// The known types present in the bitmap.
    pub fn types(self) -> impl Iterator<Item = VmType> {
        VmType::ALL.into_iter().filter(move |t| self.supports(*t))
    }
}

assert_layout!(KvmEncRegion, 16, 8, { addr: 0, size: 8 });
assert_layout!(KvmDeviceAttr, 24, 8, { flags: 0, group: 4, attr: 8, addr: 16 });
assert_layout!(KvmEnableCap, 104, 8, { cap: 0, flags: 4, args: 8, pad: 40 });
const _: () = {
    assert!(KVM_MEMORY_ENCRYPT_OP == 0xC008_AEBA);
    assert!(KVM_MEMORY_ENCRYPT_REG_REGION == 0x8010_AEBB);
    assert!(KVM_MEMORY_ENCRYPT_UNREG_REGION == 0x8010_AEBC);
    assert!(KVM_GET_DEVICE_ATTR == 0x4018_AEE2);
    assert!(KVM_HAS_DEVICE_ATTR == 0x4018_AEE3);
    assert!(KVM_SET_DEVICE_ATTR == 0x4018_AEE1);
    assert!(KVM_ENABLE_CAP == 0x4068_AEA3);
    assert!(KVM_CHECK_EXTENSION == 0xAE03);
    assert!(KVM_CREATE_VM == 0xAE01);
    assert!(KVM_CREATE_VCPU == 0xAE41);
    assert!(KVM_RUN == 0xAE80);
    assert!(KVM_SET_CPUID2 == 0x4008_AE90);
    assert!(KVM_SET_TSC_KHZ == 0xAEA2);
};
