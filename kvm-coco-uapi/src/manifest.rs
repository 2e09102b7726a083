//! A machine-readable record of every struct layout and header constant in this crate.
//!
//! Each struct and each header constant is defined through a declarative macro that also
//! records it here, so the manifest cannot drift from the definitions: sizes, alignments
//! and offsets are computed by the Rust compiler from the very types users link against
//! (`size_of`, `align_of`, `offset_of!`).
//!
//! The workspace's `cargo xtask uapi-check` turns this manifest into a C file of
//! `_Static_assert`s over the real Linux 7.3.4 uAPI headers (`linux/kvm.h`, `asm/kvm.h`,
//! `linux/psp-sev.h`) and compiles it with gcc; any mismatch fails the build with the name
//! of the offending item.
//!
//! ```
//! use kvm_coco_uapi::manifest::{self, CType};
//!
//! let cmd = manifest::structs()
//!     .find(|s| s.c_type == CType::Struct("sev_issue_cmd"))
//!     .unwrap();
//! assert_eq!(cmd.size, 16);
//! assert_eq!(cmd.fields[1].name, "data");
//! assert_eq!(cmd.fields[1].offset, 4); // packed: `data` is unaligned
//! ```
//!
//! Items that are *not* in the uAPI headers (kernel-internal constants such as the VMSA
//! feature bits, or the SNP guest-policy bits that only the firmware specification names)
//! are deliberately left out of the manifest; their values are tested against the facts
//! they come from instead.

/// How a Rust struct maps to C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CType {
    /// `struct <name>` in the uAPI headers: size, alignment and every named field are checked.
    Struct(&'static str),
    /// An anonymous member of a named struct, such as the `memory_fault` arm of the
    /// `kvm_run` exit union. Size, alignment and every field offset are checked relative to
    /// `offsetof(struct outer, member)`.
    Member {
        /// The enclosing C struct (without the `struct` keyword).
        outer: &'static str,
        /// The member name inside it.
        member: &'static str,
    },
    /// A leading part of `struct <name>`: every field offset and size is checked against the
    /// full C struct, the total size only has to be smaller or equal.
    Prefix(&'static str),
}

/// What a field of a Rust struct is in C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A named C member of the same name: its offset and size are checked.
    Named,
    /// The storage unit of one or more C bitfields. C cannot take `offsetof` a bitfield,
    /// so only the surrounding fields and the total size pin it down; its bit positions are
    /// documented on the accessors.
    Bitfield,
    /// The storage of an anonymous C union (its members are described by separate
    /// [`CType::Member`] structs). Not checked by name.
    Anonymous,
    /// Padding made explicit in Rust where C pads implicitly (needed so that the struct has
    /// no uninitialized bytes). Not checked by name.
    Padding,
}

/// Layout of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldLayout {
    /// Field name; the C member name for [`FieldKind::Named`] (a Rust raw identifier such
    /// as `r#type` is recorded as `type`).
    pub name: &'static str,
    /// Byte offset from the start of the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// What the field is in C.
    pub kind: FieldKind,
}

/// Layout of one struct, as computed by the Rust compiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StructLayout {
    /// What the struct corresponds to in C.
    pub c_type: CType,
    /// The Rust type name (for messages).
    pub rust_name: &'static str,
    /// `size_of` the Rust type.
    pub size: usize,
    /// `align_of` the Rust type.
    pub align: usize,
    /// Every field, in declaration order.
    pub fields: &'static [FieldLayout],
}

/// One constant that exists under the same name in the uAPI headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConstantEntry {
    /// The kernel name (identical to the Rust name).
    pub name: &'static str,
    /// The value, widened losslessly (negative values stay negative).
    pub value: i128,
    /// The Rust type of the constant (`u8`, `u16`, `u32`, `u64`, `i32`, `i64`).
    pub rust_type: &'static str,
}

/// Implemented by every uAPI struct of this crate: its recorded layout.
pub trait Layout {
    /// The layout computed by the compiler for this type.
    const LAYOUT: StructLayout;
}

/// Strips the `r#` prefix of a raw identifier (`r#type` → `type`).
#[doc(hidden)]
pub const fn strip_raw(s: &'static str) -> &'static str {
    match s.as_bytes() {
        [b'r', b'#', rest @ ..] => match core::str::from_utf8(rest) {
            Ok(t) => t,
            Err(_) => s,
        },
        _ => s,
    }
}

/// A C expression over the headers and the value this crate expects for it, e.g.
/// `offsetof(struct kvm_run, memory_fault)` for
/// [`KvmRunMemoryFault::KVM_RUN_OFFSET`](crate::KvmRunMember::KVM_RUN_OFFSET).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExprEntry {
    /// What the value is in this crate.
    pub name: &'static str,
    /// The C expression (evaluated as an integer constant expression).
    pub c_expr: &'static str,
    /// The expected value.
    pub value: i128,
}

/// One C bitfield member and where this crate expects its bits: `width` bits starting at
/// bit `bit` (LSB first, as GCC allocates on x86-64) of the little-endian storage unit of
/// `storage_size` bytes at `storage_offset`.
///
/// C cannot take `offsetof` a bitfield, so `cargo xtask uapi-check` compiles and **runs** a
/// small C program that sets each member to all-ones in a zeroed struct and compares the
/// resulting bytes with this record; a unit test checks the Rust accessors against the same
/// records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BitfieldEntry {
    /// The C struct (without `struct`).
    pub c_struct: &'static str,
    /// The C bitfield member.
    pub member: &'static str,
    /// Byte offset of the storage unit.
    pub storage_offset: usize,
    /// Size of the storage unit in bytes.
    pub storage_size: usize,
    /// First bit within the storage unit.
    pub bit: u32,
    /// Width in bits.
    pub width: u32,
}

/// Every bitfield group.
pub const BITFIELD_GROUPS: &[&[BitfieldEntry]] = &[crate::sev_dev::BITFIELDS];

/// Iterates over every recorded bitfield member.
pub fn bitfields() -> impl Iterator<Item = &'static BitfieldEntry> {
    BITFIELD_GROUPS.iter().flat_map(|g| g.iter())
}

/// Every struct group, one per module.
pub const STRUCT_GROUPS: &[&[StructLayout]] = &[
    crate::sev_dev::STRUCTS,
    crate::vm::STRUCTS,
    crate::sev::STRUCTS,
    crate::snp::STRUCTS,
    crate::cpuid::STRUCTS,
    crate::tdx::STRUCTS,
    crate::memory::STRUCTS,
    crate::exit::STRUCTS,
];

/// Every constant group, one per module (and per block within a module).
pub const CONSTANT_GROUPS: &[&[ConstantEntry]] = &[
    crate::ioctl::CONSTANTS,
    crate::sev_dev::IOCTLS,
    crate::sev_dev::CONSTANTS,
    crate::sev_dev::RET_CONSTANTS,
    crate::vm::VM_TYPES,
    crate::vm::CAPS,
    crate::vm::DEVICE_ATTRS,
    crate::vm::IOCTLS,
    crate::sev::CMD_IDS,
    crate::snp::CONSTANTS,
    crate::cpuid::CONSTANTS,
    crate::tdx::CMD_IDS,
    crate::memory::CONSTANTS,
    crate::exit::EXIT_REASONS,
    crate::exit::EXIT_FLAGS,
    crate::exit::PARA,
];

/// Every expression group.
pub const EXPR_GROUPS: &[&[ExprEntry]] = &[crate::exit::RUN_OFFSETS, crate::exit::RUN_FACTS];

/// Iterates over every recorded struct layout.
pub fn structs() -> impl Iterator<Item = &'static StructLayout> {
    STRUCT_GROUPS.iter().flat_map(|g| g.iter())
}

/// Iterates over every recorded header constant.
pub fn constants() -> impl Iterator<Item = &'static ConstantEntry> {
    CONSTANT_GROUPS.iter().flat_map(|g| g.iter())
}

/// Iterates over every recorded C expression.
pub fn exprs() -> impl Iterator<Item = &'static ExprEntry> {
    EXPR_GROUPS.iter().flat_map(|g| g.iter())
}
