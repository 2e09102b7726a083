//! Built-in guest images, so `vmm-cli launch` works on a fresh machine with nothing else
//! installed.
//!
//! * [`tiny_firmware`]: a 64 KiB OVMF-like image with an OVMF footer table, SEV metadata
//!   (ASEV), a TDVF descriptor, a kernel-hash table and a reset vector: the SYN64K recipe
//!   of the project's firmware facts (§8.1), so its measurements can be checked against
//!   sev-snp-measure's published values for that image.
//! * [`REAL_MODE_GUEST`]: a plain real-mode program for ordinary KVM VMs.

/// `mov dx, 0x3f8; mov al, 'K'; out dx, al; hlt`: writes `K` to COM1 and halts.
pub(crate) const REAL_MODE_GUEST: [u8; 7] = [0xba, 0xf8, 0x03, 0xb0, b'K', 0xee, 0xf4];

/// The byte the real-mode guest writes.
pub(crate) const REAL_MODE_OUTPUT: u8 = b'K';

/// The built-in 64 KiB firmware image: SYN64K (firmware facts §8.1) from
/// [`kvm_coco::measure::synthetic::syn64k`].
pub(crate) fn tiny_firmware() -> Vec<u8> {
    kvm_coco::measure::synthetic::syn64k()
}
