//! The PSP firmware command buffers (`struct sev_data_*`, kernel `include/linux/psp-sev.h`, Linux 7.3).
//!
//! Every buffer is `#[repr(C, packed)]` (alignment 1), exactly like the kernel's `__packed`
//! structs, and derives the zerocopy traits so it can be handed to a [`Transport`](crate::Transport)
//! as bytes without copying. Sizes and field offsets are asserted at compile time against the
//! tables in the project's facts (`linux-uapi.md` §8.2, `firmware-and-measurement.md` §1.7, §3.4).
//!
//! Multi-byte fields are little-endian on the wire; the structs use native integers, which is
//! correct on x86-64, the only architecture with a PSP.
//!
//! C bitfields cannot be Rust fields. A bitfield storage word is a plain integer field
//! (named in its documentation) with typed accessors named after the kernel's bitfields,
//! e.g. [`SevDataSnpLaunchUpdate::page_type`] / [`SevDataSnpLaunchUpdate::set_page_type`].
//!
//! Each buffer is bound to its command through [`Command`](crate::Command). Where the kernel
//! uses one layout for several commands (`sev_data_dbg` for DBG_DECRYPT and DBG_ENCRYPT,
//! `sev_data_snp_addr` for SNP_GCTX_CREATE, SNP_DECOMMISSION and SNP_PLATFORM_STATUS, ...),
//! each command has its own `#[repr(transparent)]` wrapper type, and buffer-less commands
//! (DF_FLUSH, SNP_DF_FLUSH, ...) have a zero-sized marker type.

/// Defines one packed firmware buffer with compile-time size/offset assertions.
macro_rules! fw_buffer {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $cname:literal, size $size:literal {
            $( $(#[$fmeta:meta])* @$off:literal pub $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[doc = ""]
        #[doc = concat!("Mirrors the kernel's `struct ", $cname, "` (packed, ", stringify!($size), " bytes).")]
        #[doc(alias = $cname)]
        #[repr(C, packed)]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
        )]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }

        impl Default for $name {
            /// The all-zero buffer, the usual starting point before filling in the inputs.
            fn default() -> Self {
                <Self as zerocopy::FromZeros>::new_zeroed()
            }
        }

        impl $name {
            /// The kernel's name of this struct.
            pub const C_NAME: &'static str = $cname;
        }

        const _: () = {
            assert!(core::mem::size_of::<$name>() == $size);
            assert!(core::mem::align_of::<$name>() == 1);
            $( assert!(core::mem::offset_of!($name, $field) == $off); )*
        };
    };
}

/// Defines a per-command wrapper around a buffer layout shared by several commands.
macro_rules! fw_alias {
    ( $(#[$meta:meta])* pub struct $name:ident($inner:ty); ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
        )]
        pub struct $name(pub $inner);

        impl core::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl core::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.0
            }
        }

        impl From<$inner> for $name {
            fn from(inner: $inner) -> Self {
                Self(inner)
            }
        }
    };
}

/// Defines a zero-sized marker for a command that takes no buffer.
macro_rules! fw_marker {
    ( $(#[$meta:meta])* pub struct $name:ident; ) => {
        $(#[$meta])*
        ///
        /// The command takes no buffer: both mailbox address registers are written as 0 and
        /// the transport receives an empty slice.
        #[repr(C)]
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
        )]
        pub struct $name;

        const _: () = assert!(core::mem::size_of::<$name>() == 0);
    };
}

/// Emits a getter/setter pair for a one-bit flag inside a bitfield storage word.
macro_rules! bit_flag {
    ( $(#[$meta:meta])* $word:ident : $wty:ty, $get:ident, $set:ident, $bit:literal ) => {
        $(#[$meta])*
        #[doc = concat!("\n\nBit ", stringify!($bit), " of `", stringify!($word), "`.")]
        #[inline]
        pub const fn $get(&self) -> bool {
            let word = self.$word;
            (word >> $bit) & 1 != 0
        }

        #[doc = concat!("Sets or clears [`", stringify!($get), "`](Self::", stringify!($get), ").")]
        #[inline]
        pub fn $set(&mut self, value: bool) {
            let mask: $wty = 1 << $bit;
            let word = self.$word;
            self.$word = if value { word | mask } else { word & !mask };
        }
    };
}

/// Emits a getter/setter pair for a multi-bit field inside a bitfield storage word.
macro_rules! bit_field {
    ( $(#[$meta:meta])* $word:ident : $wty:ty, $get:ident, $set:ident, $vty:ty, $shift:literal, $width:literal ) => {
        $(#[$meta])*
        #[doc = concat!("\n\nBits ", stringify!($shift), "..", stringify!($shift), "+", stringify!($width),
            " of `", stringify!($word), "`.")]
        #[inline]
        pub const fn $get(&self) -> $vty {
            let word = self.$word;
            ((word >> $shift) & ((1 << $width) - 1)) as $vty
        }

        #[doc = concat!("Sets [`", stringify!($get), "`](Self::", stringify!($get), "); bits of `value` above the ",
            stringify!($width), "-bit field width are discarded.")]
        #[inline]
        pub fn $set(&mut self, value: $vty) {
            let mask: $wty = ((1 << $width) - 1) << $shift;
            let word = self.$word;
            self.$word = (word & !mask) | ((<$wty>::from(value) << $shift) & mask);
        }
    };
}

pub mod sev;
pub mod snp;

pub use sev::*;
pub use snp::*;

#[cfg(test)]
mod tests;
