//! Raw ioctls not covered by kvm-ioctls.
//!
//! Each function documents what the kernel reads and writes through its argument; the
//! generic [`ioctl_ptr`] is `unsafe` because only the caller knows that the request number
//! and the pointee agree.

use std::os::fd::AsRawFd;

use kvm_coco_uapi::memory::{KVM_PRE_FAULT_MEMORY, KvmPreFaultMemory};
use kvm_coco_uapi::vm::{KVM_GET_DEVICE_ATTR, KVM_HAS_DEVICE_ATTR, KvmDeviceAttr};

use crate::error::Errno;

/// `ioctl(fd, req, arg)`, returning the non-negative result or the errno.
///
/// # Safety
///
/// `req` must be an ioctl of `fd`'s kind whose argument is a pointer to memory laid out as
/// `T` (or a plain integer that the kernel does not dereference, if `arg` is created from
/// one), and `arg` must be valid for every read and write the kernel performs for `req` for
/// the duration of the call, including any user pointers embedded in `*arg`.
pub(crate) unsafe fn ioctl_ptr<T>(fd: &impl AsRawFd, req: u32, arg: *mut T) -> Result<i32, Errno> {
    // SAFETY: the caller guarantees that `req` matches `arg` and that `arg` (and whatever
    // it points to) is valid for the kernel's accesses during the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// `KVM_GET_DEVICE_ATTR` on the system fd (`/dev/kvm`): the kernel writes one `u64` to
/// `attr.addr`.
pub(crate) fn get_system_device_attr(
    kvm: &impl AsRawFd,
    group: u32,
    attr: u64,
) -> Result<u64, Errno> {
    let mut value: u64 = 0;
    let mut a = KvmDeviceAttr {
        flags: 0,
        group,
        attr,
        addr: std::ptr::addr_of_mut!(value) as u64,
    };
    // SAFETY: KVM_GET_DEVICE_ATTR takes a `struct kvm_device_attr` (which `KvmDeviceAttr`
    // mirrors bit for bit) and, for the x86 system attributes, writes one u64 to `addr`,
    // which points to `value`, alive until the call returns.
    unsafe { ioctl_ptr(kvm, KVM_GET_DEVICE_ATTR, &raw mut a) }?;
    Ok(value)
}

/// `KVM_HAS_DEVICE_ATTR` on the system fd: `Ok(())` if the attribute exists.
pub(crate) fn has_system_device_attr(
    kvm: &impl AsRawFd,
    group: u32,
    attr: u64,
) -> Result<(), Errno> {
    let mut a = KvmDeviceAttr {
        flags: 0,
        group,
        attr,
        addr: 0,
    };
    // SAFETY: KVM_HAS_DEVICE_ATTR only reads the `struct kvm_device_attr`; `addr` is not
    // dereferenced.
    unsafe { ioctl_ptr(kvm, KVM_HAS_DEVICE_ATTR, &raw mut a) }?;
    Ok(())
}

/// One `KVM_PRE_FAULT_MEMORY` call on a vCPU fd. The kernel advances `gpa` and decreases
/// `size` by what it mapped, also when it stops early with `EINTR`/`EAGAIN`.
pub(crate) fn pre_fault_memory(
    vcpu: &impl AsRawFd,
    range: &mut KvmPreFaultMemory,
) -> Result<(), Errno> {
    // SAFETY: KVM_PRE_FAULT_MEMORY reads and writes exactly one `struct
    // kvm_pre_fault_memory`, which `KvmPreFaultMemory` mirrors; it holds no pointers.
    unsafe { ioctl_ptr(vcpu, KVM_PRE_FAULT_MEMORY, std::ptr::from_mut(range)) }?;
    Ok(())
}
