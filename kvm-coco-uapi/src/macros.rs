//! Declarative macros that define a uAPI struct or constant *and* record it in the
//! [`crate::manifest`], so that nothing defined here can escape the header check.

/// Maps an optional field marker to a [`crate::manifest::FieldKind`].
macro_rules! __uapi_field_kind {
    () => {
        $crate::manifest::FieldKind::Named
    };
    (bitfield) => {
        $crate::manifest::FieldKind::Bitfield
    };
    (pad) => {
        $crate::manifest::FieldKind::Padding
    };
    (anon) => {
        $crate::manifest::FieldKind::Anonymous
    };
}

/// Defines one struct (see [`uapi_structs!`]).
macro_rules! __uapi_struct {
    ([$(#[$meta:meta])*] $name:ident $cname:literal { $($body:tt)* }) => {
        __uapi_struct!(@define [$(#[$meta])* #[doc(alias = $cname)]] $name,
            $crate::manifest::CType::Struct($cname), { $($body)* });
    };
    ([$(#[$meta:meta])*] $name:ident ($outer:literal, $member:literal) { $($body:tt)* }) => {
        __uapi_struct!(@define [$(#[$meta])*] $name,
            $crate::manifest::CType::Member { outer: $outer, member: $member },
            { $($body)* });
    };
    ([$(#[$meta:meta])*] $name:ident [$prefix:literal] { $($body:tt)* }) => {
        __uapi_struct!(@define [$(#[$meta])*] $name,
            $crate::manifest::CType::Prefix($prefix), { $($body)* });
    };
    (
        @define [$(#[$meta:meta])*] $name:ident, $ctype:expr,
        { $( $(#[$fmeta:meta])* $(@$kind:ident)? pub $field:ident : $fty:ty ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
        )]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }
        __uapi_struct!(@impls $name, $ctype, { $( [$($kind)?] $field : $fty ),* });
    };
    (@impls $name:ident, $ctype:expr, { $( [$($kind:ident)?] $field:ident : $fty:ty ),* }) => {
        impl Default for $name {
            /// All-zero value (every field zero), the usual starting point before filling
            /// in the inputs of a command.
            fn default() -> Self {
                <Self as zerocopy::FromZeros>::new_zeroed()
            }
        }
        impl $crate::manifest::Layout for $name {
            const LAYOUT: $crate::manifest::StructLayout = $crate::manifest::StructLayout {
                c_type: $ctype,
                rust_name: stringify!($name),
                size: core::mem::size_of::<$name>(),
                align: core::mem::align_of::<$name>(),
                fields: &[ $( $crate::manifest::FieldLayout {
                    name: $crate::manifest::strip_raw(stringify!($field)),
                    offset: core::mem::offset_of!($name, $field),
                    size: core::mem::size_of::<$fty>(),
                    kind: __uapi_field_kind!($($kind)?),
                } ),* ],
            };
        }
    };
}

/// Defines a group of `#[repr(C)]` uAPI structs and records their layouts in a
/// crate-internal list named by the first token.
///
/// ```text
/// uapi_structs! { STRUCTS;
///     /// docs
///     #[repr(C)]
///     pub struct KvmSevCmd as "kvm_sev_cmd" { pub id: u32, ... }
///     #[repr(C)]
///     pub struct KvmRunTdx as ("kvm_run", "tdx") { ... }   // anonymous union member
/// }
/// ```
/// Field markers: `@bitfield` (a storage unit of C bitfields, not addressable by
/// `offsetof`), `@pad` (explicit Rust padding where C has implicit padding).
macro_rules! uapi_structs {
    ( $list:ident; $( $(#[$meta:meta])* pub struct $name:ident as $cref:tt { $($body:tt)* } )* ) => {
        // The `KnownLayout` derive emits helper types without `Debug`; they are private to
        // this module, the structs themselves all derive `Debug`.
        #[allow(missing_debug_implementations, non_snake_case)]
        mod $list {
            #[allow(unused_imports)]
            use super::*;
            $( __uapi_struct! { [$(#[$meta])*] $name $cref { $($body)* } } )*
        }
        pub use $list::{ $($name),* };
        /// Layout records of the structs defined in this module.
        pub(crate) const $list: &[$crate::manifest::StructLayout] =
            &[ $( <$name as $crate::manifest::Layout>::LAYOUT ),* ];
    };
}

/// Defines a group of constants that exist with the same name in the Linux uAPI headers,
/// recording each in a crate-internal list named by the first token.
macro_rules! uapi_consts {
    ( $list:ident; $( $(#[$meta:meta])* pub const $name:ident : $ty:ident = $val:expr; )* ) => {
        $( $(#[$meta])* pub const $name: $ty = $val; )*
        /// Constants of this module that exist in the Linux headers.
        pub(crate) const $list: &[$crate::manifest::ConstantEntry] = &[ $(
            $crate::manifest::ConstantEntry {
                name: stringify!($name),
                value: $name as i128,
                rust_type: stringify!($ty),
            }
        ),* ];
    };
}

/// Compile-time assertion of a struct's size, alignment and field offsets, with the
/// expected values typed from the facts tables (independent of the definitions).
macro_rules! assert_layout {
    ($ty:ty, $size:expr, $align:expr, { $( $field:ident : $off:expr ),* $(,)? }) => {
        const _: () = {
            assert!(core::mem::size_of::<$ty>() == $size, concat!("size of ", stringify!($ty)));
            assert!(core::mem::align_of::<$ty>() == $align, concat!("align of ", stringify!($ty)));
            $( assert!(core::mem::offset_of!($ty, $field) == $off,
                concat!("offset of ", stringify!($ty), "::", stringify!($field))); )*
        };
    };
}
