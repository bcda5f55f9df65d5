//! The one-list declaration of an ABI slot table.
//!
//! [`abi_table!`](crate::abi_table) declares, from one list of slots (each
//! with the minor version that added it), the `#[repr(C)]` table (a
//! `struct_size` word followed by one `Option<extern "C" fn>` per slot, in
//! list order), a trait with one associated function per slot that the
//! exporting side implements, the constructor of the full export table
//! from that implementation, and the slot catalogue ([`SlotInfo`]) that
//! the layout tests and docs read. Adding a slot is one line in the list
//! plus its two bodies: the export function (the trait impl) and the
//! import wrapper that calls it. See docs/abi.md, "Slot tables".

/// One slot of a table as declared: its name, the ABI minor that added it
/// and its byte offset in the `#[repr(C)]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// The field name.
    pub name: &'static str,
    /// The ABI minor version that appended the slot.
    pub minor: u16,
    /// Byte offset of the slot in the table.
    pub offset: usize,
}

/// Byte size of the part of a table that a producer of ABI minor `minor`
/// knew: the offset of the first slot added after `minor` (the whole table
/// when there is none).
pub const fn size_at_minor(slots: &[SlotInfo], full: usize, minor: u16) -> usize {
    let mut i = 0;
    while i < slots.len() {
        if slots[i].minor > minor {
            return slots[i].offset;
        }
        i += 1;
    }
    full
}

/// Declares a slot table; see the [module docs](self).
///
/// ```ignore
/// abi_table! {
///     /// The operations of X.
///     pub struct BcXVtbl: BcXSlots {
///         /// Doc of the slot.
///         [0] close(ctx: *mut c_void);
///         [1] length(ctx: *mut c_void, out: *mut u64, err: Err) -> i32;
///     }
/// }
/// ```
#[macro_export]
#[doc(hidden)]
macro_rules! abi_table {
    (
        $(#[$meta:meta])*
        pub struct $table:ident : $slots:ident {
            $(
                $(#[$smeta:meta])*
                [$minor:literal] $slot:ident ( $($arg:ident : $aty:ty),* $(,)? ) $(-> $ret:ty)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct $table {
            /// Size of this struct as the producer built it.
            pub struct_size: usize,
            $(
                $(#[$smeta])*
                #[doc = concat!("\n\nAdded in ABI minor ", stringify!($minor), ".")]
                pub $slot: Option<unsafe extern "C" fn($($arg: $aty),*) $(-> $ret)?>,
            )*
        }

        #[doc = concat!("The exporting side of [`", stringify!($table), "`]: one function per slot, ",
                        "turned into the export table by [`", stringify!($table), "::exported`].")]
        #[allow(clippy::missing_safety_doc)]
        pub trait $slots {
            $(
                $(#[$smeta])*
                unsafe extern "C" fn $slot($($arg: $aty),*) $(-> $ret)?;
            )*
        }

        impl $table {
            /// The full table of this build, every slot filled from `T`.
            pub const fn exported<T: $slots>() -> $table {
                $table {
                    struct_size: ::std::mem::size_of::<$table>(),
                    $( $slot: Some(<T as $slots>::$slot), )*
                }
            }

            /// Every slot in table order, with the minor that added it.
            pub const SLOTS: &'static [$crate::abi::table::SlotInfo] = &[
                $(
                    $crate::abi::table::SlotInfo {
                        name: stringify!($slot),
                        minor: $minor,
                        offset: ::std::mem::offset_of!($table, $slot),
                    },
                )*
            ];

            /// Byte size of the table as a producer of ABI minor `minor` built it.
            pub const fn size_at_minor(minor: u16) -> usize {
                $crate::abi::table::size_at_minor(
                    Self::SLOTS,
                    ::std::mem::size_of::<$table>(),
                    minor,
                )
            }
        }
    };
}
