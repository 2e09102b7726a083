//! One capabilities query: everything a VMM needs to know before choosing a VM type.
//!
//! [`Kvm::capabilities`] gathers, in one [`Capabilities`] value:
//!
//! * the VM types `KVM_CREATE_VM` accepts (`KVM_CAP_VM_TYPES`);
//! * memory features on `/dev/kvm` and, **per supported VM type, on a temporary VM of that
//!   type** (the VM-scoped answers differ: `KVM_CAP_MEMORY_ATTRIBUTES` is 8 only on VMs with
//!   private memory);
//! * the `KVM_CAP_EXIT_HYPERCALL` mask;
//! * the `KVM_X86_GRP_SEV` attributes of `/dev/kvm` (VMSA features, SNP policy bits,
//!   REQ_CERTS);
//! * the TDX capabilities, read through the VM scope (`KVM_TDX_CAPABILITIES` on a temporary
//!   TD), as the final TDX design requires;
//! * the SEV platform status from `/dev/sev`.
//!
//! Each part is an [`Availability`]: a value, or the reason it is not available. A missing
//! part never fails the whole query. The value serializes to JSON with a top-level
//! `vm_types` list of names.
//!
//! ```no_run
//! let caps = kvm_coco::Kvm::open()?.capabilities();
//! println!("{}", serde_json::to_string_pretty(&caps).unwrap());
//! # Ok::<(), kvm_coco::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use kvm_coco_uapi::vm::{
    KVM_CAP_EXIT_HYPERCALL, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS,
    KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_PRE_FAULT_MEMORY,
    KVM_CAP_USER_MEMORY2, KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS, KVM_X86_SEV_VMSA_FEATURES,
    KVM_X86_SNP_POLICY_BITS,
};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::error::{Errno, Error};
use crate::memory::{GuestMemfdFlags, MemoryAttributes};
use crate::system::Kvm;
use crate::vm_type::{VmType, VmTypes};

/// A capability that is either available with a value or not, with the reason.
///
/// Serializes as `{"available": true, "value": …}` or
/// `{"available": false, "reason": "…"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability<T> {
    /// Available.
    Available(T),
    /// Not available.
    Unavailable(Unavailable),
}

impl<T> Availability<T> {
    /// The value, if available.
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Available(v) => Some(v),
            Self::Unavailable(_) => None,
        }
    }

    /// Whether it is available.
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available(_))
    }

    /// The reason, if not available.
    pub fn reason(&self) -> Option<&Unavailable> {
        match self {
            Self::Available(_) => None,
            Self::Unavailable(r) => Some(r),
        }
    }
}

impl<T: Serialize> Serialize for Availability<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Availability", 2)?;
        match self {
            Self::Available(v) => {
                st.serialize_field("available", &true)?;
                st.serialize_field("value", v)?;
            }
            Self::Unavailable(r) => {
                st.serialize_field("available", &false)?;
                st.serialize_field("reason", &r.to_string())?;
            }
        }
        st.end()
    }
}

/// Why a capability is not available.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// `KVM_CHECK_EXTENSION` answered 0 (or failed).
    CapabilityAbsent {
        /// The capability's kernel name.
        cap: &'static str,
    },
    /// The VM type needed to answer is not supported by this host.
    VmTypeUnsupported {
        /// The type.
        vm_type: VmType,
        /// What the host supports.
        supported: VmTypes,
    },
    /// A `/dev/kvm` device attribute is missing (`ENXIO`: no SEV support in KVM, or an
    /// Intel host).
    AttributeAbsent {
        /// The attribute's kernel name.
        attr: &'static str,
        /// The errno of `KVM_GET_DEVICE_ATTR`.
        errno: Errno,
    },
    /// A device node is missing or not accessible.
    Device {
        /// The path.
        path: &'static str,
        /// The errno of `open`/`stat`.
        errno: Errno,
    },
    /// A query failed for another reason.
    Failed {
        /// What was attempted.
        what: &'static str,
        /// The error, rendered.
        error: String,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CapabilityAbsent { cap } => write!(f, "{cap} is 0 on this host"),
            Self::VmTypeUnsupported { vm_type, supported } => write!(
                f,
                "VM type `{vm_type}` is not supported by this host (supported: {supported})"
            ),
            Self::AttributeAbsent { attr, errno } => write!(
                f,
                "/dev/kvm attribute {attr} is absent ({errno}): KVM has no SEV support here"
            ),
            Self::Device { path, errno } => write!(f, "{path}: {errno}"),
            Self::Failed { what, error } => write!(f, "{what} failed: {error}"),
        }
    }
}

/// guest_memfd support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GuestMemfdCaps {
    /// `KVM_CAP_GUEST_MEMFD_FLAGS`: the raw supported flags.
    pub flags: u64,
    /// `GUEST_MEMFD_FLAG_MMAP` is supported.
    pub mmap: bool,
    /// `GUEST_MEMFD_FLAG_INIT_SHARED` is supported.
    pub init_shared: bool,
}

/// Memory features, answered by one fd (system or a VM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryCaps {
    /// `KVM_CAP_GUEST_MEMFD` with the flags of `KVM_CAP_GUEST_MEMFD_FLAGS`.
    pub guest_memfd: Availability<GuestMemfdCaps>,
    /// `KVM_CAP_MEMORY_ATTRIBUTES`: the supported attribute bits (8 = PRIVATE).
    pub memory_attributes: Availability<u64>,
    /// `KVM_CAP_MEMORY_FAULT_INFO`.
    pub memory_fault_info: Availability<()>,
    /// `KVM_CAP_USER_MEMORY2`.
    pub user_memory_region2: Availability<()>,
    /// `KVM_CAP_PRE_FAULT_MEMORY`.
    pub pre_fault_memory: Availability<()>,
}

impl MemoryCaps {
    /// Answers from `check(cap)` (a system or VM `KVM_CHECK_EXTENSION`).
    pub fn probe(check: impl Fn(u32) -> i32) -> Self {
        let flag = |cap: u32, name: &'static str| {
            if check(cap) > 0 {
                Availability::Available(())
            } else {
                Availability::Unavailable(Unavailable::CapabilityAbsent { cap: name })
            }
        };
        let guest_memfd = if check(KVM_CAP_GUEST_MEMFD) > 0 {
            let flags = u64::try_from(check(KVM_CAP_GUEST_MEMFD_FLAGS)).unwrap_or(0);
            let f = GuestMemfdFlags::from_bits_retain(flags);
            Availability::Available(GuestMemfdCaps {
                flags,
                mmap: f.contains(GuestMemfdFlags::MMAP),
                init_shared: f.contains(GuestMemfdFlags::INIT_SHARED),
            })
        } else {
            Availability::Unavailable(Unavailable::CapabilityAbsent {
                cap: "KVM_CAP_GUEST_MEMFD",
            })
        };
        let attrs = check(KVM_CAP_MEMORY_ATTRIBUTES);
        let memory_attributes = if attrs > 0 {
            Availability::Available(attrs as u64)
        } else {
            Availability::Unavailable(Unavailable::CapabilityAbsent {
                cap: "KVM_CAP_MEMORY_ATTRIBUTES",
            })
        };
        Self {
            guest_memfd,
            memory_attributes,
            memory_fault_info: flag(KVM_CAP_MEMORY_FAULT_INFO, "KVM_CAP_MEMORY_FAULT_INFO"),
            user_memory_region2: flag(KVM_CAP_USER_MEMORY2, "KVM_CAP_USER_MEMORY2"),
            pre_fault_memory: flag(KVM_CAP_PRE_FAULT_MEMORY, "KVM_CAP_PRE_FAULT_MEMORY"),
        }
    }

    /// Whether private memory can be used (attributes include PRIVATE).
    pub fn private_memory(&self) -> bool {
        self.memory_attributes.value().is_some_and(|a| {
            MemoryAttributes::from_bits_retain(*a).contains(MemoryAttributes::PRIVATE)
        })
    }
}

/// The `KVM_X86_GRP_SEV` attributes of `/dev/kvm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SevCaps {
    /// `KVM_X86_SEV_VMSA_FEATURES`: the `vmsa_features` mask KVM_SEV_INIT2 accepts.
    pub vmsa_features: Availability<u64>,
    /// `KVM_X86_SNP_POLICY_BITS`: the SNP policy bits SNP_LAUNCH_START accepts.
    pub snp_policy_bits: Availability<u64>,
    /// `KVM_X86_SEV_SNP_REQ_CERTS`: whether `KVM_EXIT_SNP_REQ_CERTS` can be enabled.
    pub snp_req_certs: Availability<bool>,
}

/// One configurable CPUID leaf reported by `KVM_TDX_CAPABILITIES` (a mask of the bits the
/// VMM may configure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TdxCpuidConfig {
    /// Leaf.
    pub function: u32,
    /// Sub-leaf (0 for "no sub-leaf").
    pub index: u32,
    /// Configurable EAX bits.
    pub eax: u32,
    /// Configurable EBX bits.
    pub ebx: u32,
    /// Configurable ECX bits.
    pub ecx: u32,
    /// Configurable EDX bits.
    pub edx: u32,
}

/// The TDX capabilities (`struct kvm_tdx_capabilities`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdxCaps {
    /// TD attributes the VMM may set.
    pub supported_attrs: u64,
    /// XFAM bits the VMM may set.
    pub supported_xfam: u64,
    /// GetTdVmCallInfo leaf 1 R11 handled by the kernel.
    pub kernel_tdvmcallinfo_1_r11: u64,
    /// GetTdVmCallInfo leaf 1 R11 forwarded to userspace.
    pub user_tdvmcallinfo_1_r11: u64,
    /// GetTdVmCallInfo leaf 1 R12 handled by the kernel.
    pub kernel_tdvmcallinfo_1_r12: u64,
    /// GetTdVmCallInfo leaf 1 R12 forwarded to userspace.
    pub user_tdvmcallinfo_1_r12: u64,
    /// The configurable CPUID bits.
    pub cpuid: Vec<TdxCpuidConfig>,
}

impl From<&kvm_coco_uapi::TdxCapabilitiesBuf> for TdxCaps {
    /// The answer of `KVM_TDX_CAPABILITIES`, owned.
    fn from(buf: &kvm_coco_uapi::TdxCapabilitiesBuf) -> Self {
        let h = buf.header();
        Self {
            supported_attrs: h.supported_attrs,
            supported_xfam: h.supported_xfam,
            kernel_tdvmcallinfo_1_r11: h.kernel_tdvmcallinfo_1_r11,
            user_tdvmcallinfo_1_r11: h.user_tdvmcallinfo_1_r11,
            kernel_tdvmcallinfo_1_r12: h.kernel_tdvmcallinfo_1_r12,
            user_tdvmcallinfo_1_r12: h.user_tdvmcallinfo_1_r12,
            cpuid: buf
                .entries()
                .map(|e| TdxCpuidConfig {
                    function: e.function,
                    index: e.index,
                    eax: e.eax,
                    ebx: e.ebx,
                    ecx: e.ecx,
                    edx: e.edx,
                })
                .collect(),
        }
    }
}

/// The SEV platform as seen through `/dev/sev` (PLATFORM_STATUS and SNP_PLATFORM_STATUS,
/// read with psp-driver's [`DevSev`](psp_driver::DevSev)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SevPlatformCaps {
    /// The device node used.
    pub device: &'static str,
    /// Firmware API major version.
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build id.
    pub build: u8,
    /// Platform state (0 UNINIT, 1 INIT, 2 WORKING).
    pub state: u8,
    /// Platform flags (`SEV_STATUS_FLAGS_CONFIG_ES`, …).
    pub flags: u32,
    /// Active SEV guests.
    pub guest_count: u32,
    /// The SNP part (SNP_PLATFORM_STATUS).
    pub snp: Availability<SnpPlatformCaps>,
}

/// The SNP platform status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpPlatformCaps {
    /// SNP firmware API major version.
    pub api_major: u8,
    /// SNP firmware API minor version.
    pub api_minor: u8,
    /// SNP platform state (0 UNINIT, 1 INIT).
    pub state: u8,
    /// Firmware build id.
    pub build_id: u32,
    /// Whether the RMP is initialized.
    pub rmp_initialized: bool,
    /// Guests managed by the firmware.
    pub guest_count: u32,
    /// The running TCB version.
    pub current_tcb_version: u64,
    /// The TCB version put into attestation reports.
    pub reported_tcb_version: u64,
}

/// Everything [`Kvm::capabilities`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The VM types `KVM_CREATE_VM` accepts, as names.
    pub vm_types: VmTypes,
    /// `KVM_GET_API_VERSION`.
    pub api_version: i32,
    /// Memory features on `/dev/kvm`.
    pub memory: MemoryCaps,
    /// Memory features answered by a temporary VM of each supported type.
    pub vm_scope: BTreeMap<VmType, Availability<MemoryCaps>>,
    /// `KVM_CAP_EXIT_HYPERCALL`: the hypercalls that can exit to userspace (bit 12:
    /// `KVM_HC_MAP_GPA_RANGE`).
    pub exit_hypercall: Availability<u64>,
    /// The SEV attributes of `/dev/kvm`.
    pub sev: SevCaps,
    /// The TDX capabilities, read through a temporary TD.
    pub tdx: Availability<TdxCaps>,
    /// The SEV platform status from `/dev/sev`.
    pub sev_platform: Availability<SevPlatformCaps>,
}

/// The SEV device node.
pub const DEV_SEV: &str = "/dev/sev";

impl Kvm {
    fn sev_attr(&self, attr: u64, name: &'static str) -> Availability<u64> {
        match self.device_attr(KVM_X86_GRP_SEV, attr) {
            Ok(v) => Availability::Available(v),
            Err(Error::Ioctl { errno, .. }) => {
                Availability::Unavailable(Unavailable::AttributeAbsent { attr: name, errno })
            }
            Err(e) => Availability::Unavailable(Unavailable::Failed {
                what: "KVM_GET_DEVICE_ATTR",
                error: e.to_string(),
            }),
        }
    }

    /// The TDX capabilities through a temporary TD (the only scope the kernel offers).
    ///
    /// ```no_run
    /// match kvm_coco::Kvm::open()?.tdx_capabilities().value() {
    ///     Some(tdx) => println!("TD attributes {:#x}", tdx.supported_attrs),
    ///     None => println!("no TDX here"),
    /// }
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn tdx_capabilities(&self) -> Availability<TdxCaps> {
        let supported = self.supported_vm_types();
        if !supported.contains(VmType::Tdx) {
            return Availability::Unavailable(Unavailable::VmTypeUnsupported {
                vm_type: VmType::Tdx,
                supported,
            });
        }
        let vm = match self.create_vm(VmType::Tdx) {
            Ok(vm) => vm,
            Err(e) => {
                return Availability::Unavailable(Unavailable::Failed {
                    what: "KVM_CREATE_VM(KVM_X86_TDX_VM)",
                    error: e.to_string(),
                });
            }
        };
        match vm
            .tdx()
            .map_err(crate::ops::EncryptOpError::from)
            .and_then(|td| td.capabilities())
        {
            Ok(buf) => Availability::Available(TdxCaps::from(&buf)),
            Err(e) => Availability::Unavailable(Unavailable::Failed {
                what: "KVM_TDX_CAPABILITIES",
                error: e.to_string(),
            }),
        }
    }

    /// The memory features of a temporary VM of `vm_type`.
    ///
    /// ```no_run
    /// use kvm_coco::VmType;
    /// let caps = kvm_coco::Kvm::open()?.vm_memory_capabilities(VmType::Default);
    /// println!("{caps:?}");
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn vm_memory_capabilities(&self, vm_type: VmType) -> Availability<MemoryCaps> {
        match self.create_vm(vm_type) {
            Ok(vm) => Availability::Available(MemoryCaps::probe(|c| vm.check_extension(c))),
            Err(Error::UnsupportedVmType { supported, .. }) => {
                Availability::Unavailable(Unavailable::VmTypeUnsupported { vm_type, supported })
            }
            Err(e) => Availability::Unavailable(Unavailable::Failed {
                what: "KVM_CREATE_VM",
                error: e.to_string(),
            }),
        }
    }

    /// The SEV platform part (`/dev/sev`, through psp-driver's `DevSev`).
    ///
    /// ```no_run
    /// let p = kvm_coco::Kvm::open()?.sev_platform_capabilities();
    /// if let Some(reason) = p.reason() {
    ///     println!("no SEV platform: {reason}");
    /// }
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn sev_platform_capabilities(&self) -> Availability<SevPlatformCaps> {
        sev_platform(DEV_SEV)
    }

    /// Runs the whole capabilities query (see the [module docs](crate::caps)).
    ///
    /// ```no_run
    /// use kvm_coco::VmType;
    /// let caps = kvm_coco::Kvm::open()?.capabilities();
    /// assert!(caps.vm_types.contains(VmType::Default));
    /// if let Some(reason) = caps.tdx.reason() {
    ///     println!("no TDX: {reason}");
    /// }
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn capabilities(&self) -> Capabilities {
        let vm_types = self.supported_vm_types();
        let exit_hypercall = match self.check_extension(KVM_CAP_EXIT_HYPERCALL) {
            r if r > 0 => Availability::Available(r as u64),
            _ => Availability::Unavailable(Unavailable::CapabilityAbsent {
                cap: "KVM_CAP_EXIT_HYPERCALL",
            }),
        };
        let snp_req_certs =
            match self.sev_attr(KVM_X86_SEV_SNP_REQ_CERTS, "KVM_X86_SEV_SNP_REQ_CERTS") {
                Availability::Available(v) => Availability::Available(v != 0),
                Availability::Unavailable(r) => Availability::Unavailable(r),
            };
        Capabilities {
            vm_types,
            api_version: self.api_version(),
            memory: MemoryCaps::probe(|c| self.check_extension(c)),
            vm_scope: vm_types
                .iter()
                .map(|t| (t, self.vm_memory_capabilities(t)))
                .collect(),
            exit_hypercall,
            sev: SevCaps {
                vmsa_features: self
                    .sev_attr(KVM_X86_SEV_VMSA_FEATURES, "KVM_X86_SEV_VMSA_FEATURES"),
                snp_policy_bits: self.sev_attr(KVM_X86_SNP_POLICY_BITS, "KVM_X86_SNP_POLICY_BITS"),
                snp_req_certs,
            },
            tdx: self.tdx_capabilities(),
            sev_platform: self.sev_platform_capabilities(),
        }
    }
}

fn sev_platform(path: &'static str) -> Availability<SevPlatformCaps> {
    use psp_driver::{DevSev, DevSevError, Platform};
    let dev = match DevSev::open_read_only(Path::new(path)) {
        Ok(dev) => dev,
        Err(DevSevError::NotFound { .. }) => {
            return Availability::Unavailable(Unavailable::Device {
                path,
                errno: Errno::from_raw(libc::ENOENT),
            });
        }
        Err(DevSevError::PermissionDenied { source, .. }) => {
            return Availability::Unavailable(Unavailable::Device {
                path,
                errno: Errno::from_raw(source.raw_os_error().unwrap_or(libc::EACCES)),
            });
        }
        Err(e) => {
            return Availability::Unavailable(Unavailable::Failed {
                what: "open /dev/sev",
                error: e.to_string(),
            });
        }
    };
    let st = match dev.platform_status() {
        Ok(st) => st,
        Err(e) => {
            return Availability::Unavailable(Unavailable::Failed {
                what: "SEV PLATFORM_STATUS",
                error: e.to_string(),
            });
        }
    };
    let snp = match dev.snp_platform_status() {
        Ok(s) => Availability::Available(SnpPlatformCaps {
            api_major: s.api_major,
            api_minor: s.api_minor,
            state: s.state,
            build_id: s.build_id,
            rmp_initialized: s.is_rmp_initialized(),
            guest_count: s.guest_count,
            current_tcb_version: s.current_tcb_version,
            reported_tcb_version: s.reported_tcb_version,
        }),
        Err(e) => Availability::Unavailable(Unavailable::Failed {
            what: "SNP_PLATFORM_STATUS",
            error: e.to_string(),
        }),
    };
    Availability::Available(SevPlatformCaps {
        device: path,
        api_major: st.api_major,
        api_minor: st.api_minor,
        build: st.build,
        state: st.state,
        flags: st.flags,
        guest_count: st.guest_count,
        snp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_serializes_value_or_reason() {
        let a: Availability<u64> = Availability::Available(8);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"available": true, "value": 8})
        );
        let u: Availability<u64> = Availability::Unavailable(Unavailable::CapabilityAbsent {
            cap: "KVM_CAP_MEMORY_ATTRIBUTES",
        });
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"available": false, "reason": "KVM_CAP_MEMORY_ATTRIBUTES is 0 on this host"})
        );
    }

    #[test]
    fn memory_caps_probe_decodes_answers() {
        // Answers as observed on a machine of this project's kind (facts
        // kvm-on-this-machine-kind §1).
        let caps = MemoryCaps::probe(|c| match c {
            234 => 1,
            244 => 3,
            233 => 0,
            232 => 1,
            231 => 1,
            236 => 0,
            _ => -1,
        });
        assert_eq!(
            caps.guest_memfd,
            Availability::Available(GuestMemfdCaps {
                flags: 3,
                mmap: true,
                init_shared: true
            })
        );
        assert!(!caps.memory_attributes.is_available());
        assert!(!caps.private_memory());
        assert!(caps.memory_fault_info.is_available());
        assert!(caps.user_memory_region2.is_available());
        assert!(!caps.pre_fault_memory.is_available());
    }

    #[test]
    fn missing_sev_device_is_a_reason_not_a_failure() {
        let a = sev_platform("/nonexistent/sev");
        let r = a.reason().unwrap().to_string();
        assert!(r.starts_with("/nonexistent/sev: ENOENT"), "{r}");
    }
}
