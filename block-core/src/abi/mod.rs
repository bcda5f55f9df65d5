//! The stable C plugin ABI.
//!
//! A plugin library exports two symbols:
//! - `blk_plugin_abi`: a [`BcAbiStamp`] static (magic, major, minor) that the
//!   host reads and checks *before calling anything* in the library;
//! - `blk_plugin_entry`: `extern "C" fn(*const BcHostApi) -> *const BcPluginHeader`.
//!
//! Every table starts with `struct_size`. Tables only grow at the end; the
//! reader zero-fills its own copy and copies `min(struct_size, own size)`
//! bytes, so a missing (or NULL) slot means "unsupported". A new minor
//! version may only append slots; a major change is a new ABI that old hosts
//! refuse. Nothing allocated on one side is freed on the other: variable-size
//! results go through host-owned sinks ([`BcStrSink`], [`BcErrSink`]).
//! Cold-path structured data (info, check reports, snapshot lists, option
//! schemas) crosses as JSON text, whose readers ignore unknown fields.
//!
//! See docs/abi.md for the design and its reasons.
#![allow(non_camel_case_types)]

use std::ffi::c_void;

pub mod checks;
mod errors;
pub mod export;
mod host_api;
pub mod import;
mod json;
mod lent;
mod lent_handles;
mod node_export;
mod node_import;
#[cfg(test)]
mod panic_tests;
pub mod plugin;
mod sinks;
pub mod table;
#[cfg(test)]
mod tests;

pub use errors::{
    drop_payload, guard, panic_message, report_error, report_panic, PANIC_LOG_TARGET,
};
pub use json::{options_from_json, options_to_json};
pub use lent::{export_host_services, release_lent, ForeignHostServices};
pub use node_export::export_node;
pub use node_import::ForeignNode;

/// The magic number in [`BcAbiStamp`] and [`BcPluginHeader`]: `"BLKPLUG\0"`.
pub const BLK_ABI_MAGIC: u64 = u64::from_le_bytes(*b"BLKPLUG\0");
/// The ABI major version. Frozen at 1: a change here means a new ABI.
pub const BLK_ABI_MAJOR: u16 = 1;
/// The ABI minor version of this build. Minor 0 is the base interface;
/// minors 1, 2 and 3 appended the slots marked so below; minor 4 gave
/// `BcExtent.mapped_child` (formerly reserved, zero = file) its meaning;
/// minor 5 appended the control mask, limits and capabilities node slots,
/// the open-option schema driver slot, and indexed child roles; minor 6
/// appended the `probe_checked` driver slot and gave
/// `BcAbiStamp.panic_strategy` (formerly reserved, zero = undeclared) its
/// meaning.
pub const BLK_ABI_MINOR: u16 = 6;
/// The name of the exported stamp symbol.
pub const ABI_STAMP_SYMBOL: &[u8] = b"blk_plugin_abi\0";
/// The name of the exported entry symbol.
pub const ENTRY_SYMBOL: &[u8] = b"blk_plugin_entry\0";

/// The version stamp a plugin exports as the static `blk_plugin_abi`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BcAbiStamp {
    /// [`BLK_ABI_MAGIC`].
    pub magic: u64,
    /// ABI major version the plugin was built against.
    pub abi_major: u16,
    /// ABI minor version the plugin was built against.
    pub abi_minor: u16,
    /// How a panic in the plugin behaves (minor 6; reserved and zero
    /// before): [`BcAbiStamp::PANIC_UNDECLARED`], [`BcAbiStamp::PANIC_UNWIND`]
    /// or [`BcAbiStamp::PANIC_ABORT`]. Hosts refuse `PANIC_ABORT` plugins.
    pub panic_strategy: u32,
}

impl BcAbiStamp {
    /// The plugin does not say (built before minor 6, or not in Rust).
    pub const PANIC_UNDECLARED: u32 = 0;
    /// Built with `panic = "unwind"`: its slots catch panics.
    pub const PANIC_UNWIND: u32 = 1;
    /// Built with `panic = "abort"`: any panic in it ends the host process.
    pub const PANIC_ABORT: u32 = 2;

    /// The stamp of this build, panic strategy undeclared (plugins use
    /// [`BcAbiStamp::for_plugin`], which `export_plugin!` evaluates in the
    /// plugin crate's own compilation).
    pub const CURRENT: BcAbiStamp = BcAbiStamp {
        magic: BLK_ABI_MAGIC,
        abi_major: BLK_ABI_MAJOR,
        abi_minor: BLK_ABI_MINOR,
        panic_strategy: BcAbiStamp::PANIC_UNDECLARED,
    };

    /// The stamp of a plugin whose crate was compiled with unwinding
    /// panics (`unwinds`, i.e. `cfg!(panic = "unwind")` there) or not.
    pub const fn for_plugin(unwinds: bool) -> BcAbiStamp {
        BcAbiStamp {
            panic_strategy: if unwinds {
                BcAbiStamp::PANIC_UNWIND
            } else {
                BcAbiStamp::PANIC_ABORT
            },
            ..BcAbiStamp::CURRENT
        }
    }
}

/// A borrowed byte string: `ptr` may be NULL (meaning "absent") when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcStr {
    /// Start of the bytes.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl BcStr {
    /// The absent string (NULL pointer).
    pub const NONE: BcStr = BcStr {
        ptr: std::ptr::null(),
        len: 0,
    };
    /// Borrows a byte slice.
    pub fn from_bytes(b: &[u8]) -> BcStr {
        BcStr {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }
    /// Borrows a string.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> BcStr {
        BcStr::from_bytes(s.as_bytes())
    }
    /// Borrows an optional string (`None` becomes NULL).
    pub fn from_opt(s: Option<&str>) -> BcStr {
        s.map(BcStr::from_str).unwrap_or(BcStr::NONE)
    }
    /// True when this is the absent string.
    pub fn is_none(&self) -> bool {
        self.ptr.is_null()
    }
    /// The bytes, borrowed no longer than this `BcStr` (a `BcStr` is
    /// only ever lent for the duration of one call).
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for reads while `self` is borrowed.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
    /// Copies into an owned string (lossy UTF-8).
    ///
    /// # Safety
    /// As [`BcStr::as_bytes`].
    pub unsafe fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
    /// Copies into an optional owned string (NULL becomes `None`).
    ///
    /// # Safety
    /// As [`BcStr::as_bytes`].
    pub unsafe fn to_opt_string(&self) -> Option<String> {
        if self.is_none() {
            None
        } else {
            Some(self.to_string_lossy())
        }
    }
}

/// An error as it crosses the ABI. Borrowed for the duration of the `set` call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcError {
    /// Positive errno number.
    pub errno: i32,
    /// 1 when `offset` is meaningful.
    pub has_offset: u32,
    /// The byte offset.
    pub offset: u64,
    /// The operation.
    pub op: BcStr,
    /// The file, or NULL.
    pub file: BcStr,
    /// The message.
    pub message: BcStr,
}

/// A caller-owned error sink: the callee calls `set` before returning non-zero.
#[repr(C)]
pub struct BcErrSink {
    /// Caller context.
    pub ctx: *mut c_void,
    /// Records the error (copying what it needs).
    pub set: unsafe extern "C" fn(ctx: *mut c_void, err: *const BcError),
}

/// A caller-owned sink for a string result (JSON documents).
#[repr(C)]
pub struct BcStrSink {
    /// Caller context.
    pub ctx: *mut c_void,
    /// Appends bytes to the result.
    pub push: unsafe extern "C" fn(ctx: *mut c_void, s: BcStr),
}

/// One I/O buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcIoVec {
    /// Start of the buffer.
    pub ptr: *mut u8,
    /// Length in bytes.
    pub len: usize,
}

/// A block-status result.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BcExtent {
    /// Bytes covered.
    pub length: u64,
    /// `ExtentFlags` bits.
    pub flags: u32,
    /// With OFFSET_VALID: the `ChildRole` number of the child
    /// `mapped_offset` is in, 0 (file) or 2 (data-file). Reserved and zero
    /// before minor 4, so a plugin that never sets it means "file".
    pub mapped_child: u32,
    /// Offset in the child named by `mapped_child`, with OFFSET_VALID.
    pub mapped_offset: u64,
}

/// An open node as it crosses the ABI: opaque context plus its vtable.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcNode {
    /// Owned by the side that created the node; released by `close`.
    pub ctx: *mut c_void,
    /// The node's operations.
    pub vtbl: *const BcNodeVtbl,
}

type Err = *const BcErrSink;

crate::abi_table! {
    /// The operations of an open node. Every slot returning `i32` returns 0
    /// or a negative errno (after calling the error sink).
    pub struct BcNodeVtbl: BcNodeSlots {
        /// Releases the node. Required.
        [0] close(ctx: *mut c_void);
        /// Vectored read. Required.
        [0] read(ctx: *mut c_void, offset: u64, iov: *const BcIoVec, niov: usize, flags: u32, err: Err) -> i32;
        /// Vectored write.
        [0] write(ctx: *mut c_void, offset: u64, iov: *const BcIoVec, niov: usize, flags: u32, err: Err) -> i32;
        /// Flush.
        [0] flush(ctx: *mut c_void, err: Err) -> i32;
        /// Length into `*out`.
        [0] length(ctx: *mut c_void, out: *mut u64, err: Err) -> i32;
        /// Info as JSON (`NodeInfo`) into the sink.
        [0] info_json(ctx: *mut c_void, out: *const BcStrSink, err: Err) -> i32;
        /// Discard.
        [1] discard(ctx: *mut c_void, offset: u64, len: u64, err: Err) -> i32;
        /// Write zeroes with `ZeroFlags` bits.
        [1] write_zeroes(ctx: *mut c_void, offset: u64, len: u64, flags: u32, err: Err) -> i32;
        /// Truncate with a `Preallocation` number.
        [1] truncate(ctx: *mut c_void, size: u64, prealloc: u32, err: Err) -> i32;
        /// Allocated size into `*out`.
        [1] allocated_size(ctx: *mut c_void, out: *mut u64, err: Err) -> i32;
        /// Block status of the range at `offset`.
        [1] block_status(ctx: *mut c_void, offset: u64, len: u64, out: *mut BcExtent, err: Err) -> i32;
        /// 1 when the node reads as zeros after creation.
        [1] has_zero_init(ctx: *mut c_void) -> i32;
        /// Check with `CheckMode` bits; the `CheckReport` as JSON into the sink.
        [1] check_json(ctx: *mut c_void, mode: u32, out: *const BcStrSink, err: Err) -> i32;
        /// Snapshot list (`[SnapshotInfo]` as JSON) into the sink.
        [1] snapshot_list_json(ctx: *mut c_void, out: *const BcStrSink, err: Err) -> i32;
        /// Snapshot create by name.
        [1] snapshot_create(ctx: *mut c_void, name: BcStr, err: Err) -> i32;
        /// Snapshot apply by ID or name.
        [1] snapshot_apply(ctx: *mut c_void, name: BcStr, err: Err) -> i32;
        /// Snapshot delete by ID or name.
        [1] snapshot_delete(ctx: *mut c_void, name: BcStr, err: Err) -> i32;
        /// Change the stored backing file (NULL strings remove it).
        [1] change_backing_file(ctx: *mut c_void, filename: BcStr, format: BcStr, err: Err) -> i32;
        /// Invalidate cached metadata.
        [1] invalidate_cache(ctx: *mut c_void, err: Err) -> i32;
        /// Inactivate for a handoff.
        [1] inactivate(ctx: *mut c_void, err: Err) -> i32;
        /// Activate after a handoff.
        [1] activate(ctx: *mut c_void, err: Err) -> i32;
        /// Drop every allocation (reads fall through to the backing file).
        [2] make_empty(ctx: *mut c_void, err: Err) -> i32;
        /// Amend format options; options as a JSON array of `[key, value]` pairs.
        [2] amend_json(ctx: *mut c_void, options_json: BcStr, err: Err) -> i32;
        /// Persistent dirty bitmap control: one operation described in JSON
        /// (`BitmapControl::bitmap`); the JSON result into the sink.
        [3] bitmap_json(ctx: *mut c_void, request_json: BcStr, out: *const BcStrSink, err: Err) -> i32;
        /// The management capabilities the node really offers, as
        /// [`BcControlMask`] bits (the slots above exist in every table
        /// this build exports, offered or not).
        [5] control_mask(ctx: *mut c_void) -> u64;
        /// Request shape limits into `*out` (written up to the smaller of
        /// its `struct_size` and the producer's); 0 or -errno.
        [5] limits(ctx: *mut c_void, out: *mut BcIoLimits) -> i32;
        /// Native capabilities into `*out` (as `limits`); 0 or -errno.
        [5] capabilities(ctx: *mut c_void, out: *mut BcNodeCaps) -> i32;
    }
}

/// Bits of [`BcNodeVtbl::control_mask`]: which capability accessors of
/// `BlockNode` answer `Some`. Unknown bits are ignored by readers.
pub struct BcControlMask;

impl BcControlMask {
    /// `snapshots()`.
    pub const SNAPSHOTS: u64 = 1 << 0;
    /// `check_control()`.
    pub const CHECK: u64 = 1 << 1;
    /// `amend_control()`.
    pub const AMEND: u64 = 1 << 2;
    /// `migration()`.
    pub const MIGRATION: u64 = 1 << 3;
    /// `backing_control()`.
    pub const BACKING: u64 = 1 << 4;
    /// `bitmap_control()`.
    pub const BITMAPS: u64 = 1 << 5;
}

/// `IoLimits` as it crosses the ABI (minor 5). The receiver sets
/// `struct_size` to its own size and zero-fills; the producer writes the
/// fields both know. Zero means "no constraint" everywhere (an alignment
/// of 0 reads as 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BcIoLimits {
    /// Size of this struct as the receiver built it.
    pub struct_size: usize,
    /// `IoLimits::request_alignment`.
    pub request_alignment: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// `IoLimits::max_transfer`.
    pub max_transfer: u64,
    /// `IoLimits::optimal_transfer`.
    pub optimal_transfer: u64,
    /// `IoLimits::max_discard`.
    pub max_discard: u64,
}

/// `NodeCapabilities` as it crosses the ABI (minor 5), filled like
/// [`BcIoLimits`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BcNodeCaps {
    /// Size of this struct as the receiver built it.
    pub struct_size: usize,
    /// `BcNodeCaps::CAN_ZERO` ... bits.
    pub flags: u32,
    /// `ThreadModel` number: 0 parallel, 1 serialize requests.
    pub thread_model: u32,
}

impl BcNodeCaps {
    /// `can_zero`.
    pub const CAN_ZERO: u32 = 1 << 0;
    /// `can_fast_zero`.
    pub const CAN_FAST_ZERO: u32 = 1 << 1;
    /// `can_fua`.
    pub const CAN_FUA: u32 = 1 << 2;
    /// `can_discard`.
    pub const CAN_DISCARD: u32 = 1 << 3;
    /// `multi_conn_safe`.
    pub const MULTI_CONN_SAFE: u32 = 1 << 4;
}

/// What a format driver is shown when probing.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcProbeInput {
    /// Size of this struct.
    pub struct_size: usize,
    /// First bytes of the file.
    pub head: BcStr,
    /// Last bytes of the file.
    pub tail: BcStr,
    /// File size.
    pub file_size: u64,
    /// File name.
    pub filename: BcStr,
}

/// An open request.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcOpenRequest {
    /// Size of this struct.
    pub struct_size: usize,
    /// File name.
    pub filename: BcStr,
    /// Options as a JSON array of `[key, value]` pairs.
    pub options_json: BcStr,
    /// `OpenFlags` bits.
    pub flags: u32,
}

/// A child-open request from a driver to the host.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcChildRequest {
    /// Size of this struct.
    pub struct_size: usize,
    /// `ChildRole` number.
    pub role: u32,
    /// `OpenFlags` bits.
    pub flags: u32,
    /// File name.
    pub filename: BcStr,
    /// Resolve relative names against this file, or NULL.
    pub relative_to: BcStr,
    /// Format driver name, or NULL to probe.
    pub format: BcStr,
    /// Options as a JSON array of `[key, value]` pairs.
    pub options_json: BcStr,
}

/// Host services for one open or create, as they cross the ABI.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcHostServices {
    /// Owned by the host; released by `release`.
    pub ctx: *mut c_void,
    /// The operations.
    pub vtbl: *const BcHostServicesVtbl,
}

crate::abi_table! {
    /// Operations of [`BcHostServices`].
    pub struct BcHostServicesVtbl: BcHostServicesSlots {
        /// Releases the services handle. Required.
        [0] release(ctx: *mut c_void);
        /// Takes one more reference (the receiver calls `release` once per reference).
        [0] retain(ctx: *mut c_void);
        /// Opens a child node into `*out`.
        [0] open_child(ctx: *mut c_void, req: *const BcChildRequest, out: *mut BcNode, err: Err) -> i32;
        /// Creates a protocol-level file.
        [1] create_file(ctx: *mut c_void, filename: BcStr, size: u64, prealloc: u32, err: Err) -> i32;
    }
}

/// A driver as it crosses the ABI.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcDriver {
    /// Owned by the plugin for the life of the process.
    pub ctx: *const c_void,
    /// The driver's operations.
    pub vtbl: *const BcDriverVtbl,
}

crate::abi_table! {
    /// The operations and identity of a driver.
    pub struct BcDriverVtbl: BcDriverSlots {
        /// Name into the sink. Required.
        [0] name(ctx: *const c_void, out: *const BcStrSink);
        /// `DriverKind` number. Required.
        [0] kind(ctx: *const c_void) -> u32;
        /// `DriverCaps` bits.
        [0] caps(ctx: *const c_void) -> u32;
        /// Description into the sink.
        [0] description(ctx: *const c_void, out: *const BcStrSink);
        /// Protocol prefixes as a JSON array of strings into the sink.
        [0] protocol_prefixes_json(ctx: *const c_void, out: *const BcStrSink);
        /// Probe score 0..=100 (0 also when the probe failed: hosts of
        /// minor 6 call `probe_checked` when present).
        [0] probe(ctx: *const c_void, input: *const BcProbeInput) -> u32;
        /// Opens a node. The host services handle is lent for the call; the
        /// driver calls `retain` to keep it.
        [0] open(ctx: *const c_void, req: *const BcOpenRequest, host: BcHostServices, out: *mut BcNode, err: Err) -> i32;
        /// Create-option schema (`[OptDesc]` JSON) into the sink.
        [1] create_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32;
        /// Creates an image; options as a JSON array of `[key, value]` pairs.
        [1] create(ctx: *const c_void, filename: BcStr, options_json: BcStr, host: BcHostServices, err: Err) -> i32;
        /// Amend-option schema (`[OptDesc]` JSON) into the sink.
        [2] amend_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32;
        /// Measure: a `MeasureRequest` JSON in, a `MeasureResult` JSON into the sink.
        [2] measure_json(ctx: *const c_void, request_json: BcStr, out: *const BcStrSink, err: Err) -> i32;
        /// Open-option schema (`[OptDesc]` JSON) into the sink.
        [5] open_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32;
        /// Probe that can fail: the score 0..=100 into `*out` and 0, or
        /// -errno after calling the error sink (the probe failed or
        /// panicked; the host refuses the open instead of guessing).
        [6] probe_checked(ctx: *const c_void, input: *const BcProbeInput, out: *mut u32, err: Err) -> i32;
    }
}

/// Log levels across the ABI (as `log::Level`: 1 error .. 5 trace; 0 off).
pub type BcLogLevel = u32;

/// Process-wide services the host passes to `blk_plugin_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BcHostApi {
    /// Size of this struct.
    pub struct_size: usize,
    /// The host's ABI major.
    pub abi_major: u16,
    /// The host's ABI minor.
    pub abi_minor: u16,
    /// Reserved, zero.
    pub reserved: u32,
    /// Host context for the callbacks.
    pub ctx: *const c_void,
    /// Emits one log record.
    pub log: Option<
        unsafe extern "C" fn(
            ctx: *const c_void,
            level: BcLogLevel,
            target: BcStr,
            message: BcStr,
            file: BcStr,
            line: u32,
        ),
    >,
    /// The host's maximum enabled level.
    pub max_level: Option<unsafe extern "C" fn(ctx: *const c_void) -> BcLogLevel>,
}

/// What `blk_plugin_entry` returns: the plugin's identity and drivers. Owned
/// by the plugin for the life of the process.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BcPluginHeader {
    /// [`BLK_ABI_MAGIC`].
    pub magic: u64,
    /// ABI major.
    pub abi_major: u16,
    /// ABI minor.
    pub abi_minor: u16,
    /// Size of this struct.
    pub struct_size: u32,
    /// Plugin name (used as the log target prefix).
    pub name: BcStr,
    /// Plugin version text.
    pub version: BcStr,
    /// Number of drivers.
    pub n_drivers: usize,
    /// The drivers.
    pub drivers: *const BcDriver,
}

/// Copies a producer's table into a zero-filled local one, reading only
/// `min(struct_size, size_of::<T>())` bytes: slots the producer did not know
/// stay NULL ("unsupported").
///
/// # Safety
/// `src` must point to a readable table whose first field is a `usize`
/// struct_size that truthfully states how many bytes are readable. `T` must be
/// a `repr(C)` table of integers and `Option<fn>` slots (all-zero is valid).
pub unsafe fn copy_table<T: Copy>(src: *const T) -> Option<T> {
    if src.is_null() {
        return None;
    }
    let size = *(src as *const usize);
    if size < std::mem::size_of::<usize>() {
        return None;
    }
    let n = size.min(std::mem::size_of::<T>());
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    std::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr() as *mut u8, n);
    Some(out.assume_init())
}

/// Writes `v` into a receiver-owned out table (the receiver set its
/// `struct_size` and zero-filled it): copies the fields after `struct_size`
/// up to `min(receiver's struct_size, size_of::<T>())` bytes, so neither
/// side writes or reads past what the other knows; the receiver's
/// `struct_size` is kept.
///
/// # Safety
/// `dst` must be NULL or a writable table whose first field is a `usize`
/// struct_size that truthfully states how many bytes are writable.
pub unsafe fn write_table<T: Copy>(dst: *mut T, v: &T) {
    if dst.is_null() {
        return;
    }
    let word = std::mem::size_of::<usize>();
    let n = (*(dst as *const usize)).min(std::mem::size_of::<T>());
    if n > word {
        std::ptr::copy_nonoverlapping(
            (v as *const T as *const u8).add(word),
            (dst as *mut u8).add(word),
            n - word,
        );
    }
}

/// Byte size of the minor-0 part of [`BcNodeVtbl`].
pub const NODE_VTBL_MINOR0_SIZE: usize = BcNodeVtbl::size_at_minor(0);
/// Byte size of the minor-0 part of [`BcDriverVtbl`].
pub const DRIVER_VTBL_MINOR0_SIZE: usize = BcDriverVtbl::size_at_minor(0);
/// Byte size of the minor-0 part of [`BcHostServicesVtbl`].
pub const HOST_SERVICES_VTBL_MINOR0_SIZE: usize = BcHostServicesVtbl::size_at_minor(0);

#[cfg(all(test, target_pointer_width = "64"))]
mod layout_tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The frozen layout: these numbers may never change within major 1.
    #[test]
    fn frozen_layout_64bit() {
        assert_eq!(size_of::<BcAbiStamp>(), 16);
        assert_eq!(size_of::<BcStr>(), 16);
        assert_eq!(size_of::<BcError>(), 64);
        assert_eq!(size_of::<BcIoVec>(), 16);
        assert_eq!(size_of::<BcExtent>(), 24);
        assert_eq!(offset_of!(BcExtent, mapped_child), 12);
        assert_eq!(offset_of!(BcNodeVtbl, close), 8);
        assert_eq!(offset_of!(BcNodeVtbl, info_json), 48);
        assert_eq!(NODE_VTBL_MINOR0_SIZE, 56);
        assert_eq!(size_of::<BcNodeVtbl>(), 56 + 15 * 8 + 2 * 8 + 8 + 3 * 8);
        assert_eq!(offset_of!(BcDriverVtbl, open), 56);
        assert_eq!(DRIVER_VTBL_MINOR0_SIZE, 64);
        assert_eq!(size_of::<BcDriverVtbl>(), 80 + 2 * 8 + 8 + 8);
        assert_eq!(HOST_SERVICES_VTBL_MINOR0_SIZE, 32);
        assert_eq!(size_of::<BcHostApi>(), 40);
        assert_eq!(size_of::<BcPluginHeader>(), 64);
        assert_eq!(size_of::<BcProbeInput>(), 64);
        assert_eq!(size_of::<BcOpenRequest>(), 48);
        assert_eq!(size_of::<BcChildRequest>(), 80);
        assert_eq!(size_of::<BcIoLimits>(), 40);
        assert_eq!(size_of::<BcNodeCaps>(), 16);
    }

    /// The frozen slot lists (name, minor) of every table, in table order:
    /// slots are 8 bytes each after the 8-byte `struct_size`, so each
    /// slot's offset is fixed by its position. Only appending is allowed.
    const NODE: &[(&str, u16)] = &[
        ("close", 0),
        ("read", 0),
        ("write", 0),
        ("flush", 0),
        ("length", 0),
        ("info_json", 0),
        ("discard", 1),
        ("write_zeroes", 1),
        ("truncate", 1),
        ("allocated_size", 1),
        ("block_status", 1),
        ("has_zero_init", 1),
        ("check_json", 1),
        ("snapshot_list_json", 1),
        ("snapshot_create", 1),
        ("snapshot_apply", 1),
        ("snapshot_delete", 1),
        ("change_backing_file", 1),
        ("invalidate_cache", 1),
        ("inactivate", 1),
        ("activate", 1),
        ("make_empty", 2),
        ("amend_json", 2),
        ("bitmap_json", 3),
        ("control_mask", 5),
        ("limits", 5),
        ("capabilities", 5),
    ];
    const DRIVER: &[(&str, u16)] = &[
        ("name", 0),
        ("kind", 0),
        ("caps", 0),
        ("description", 0),
        ("protocol_prefixes_json", 0),
        ("probe", 0),
        ("open", 0),
        ("create_options_json", 1),
        ("create", 1),
        ("amend_options_json", 2),
        ("measure_json", 2),
        ("open_options_json", 5),
        ("probe_checked", 6),
    ];
    const HOST_SERVICES: &[(&str, u16)] = &[
        ("release", 0),
        ("retain", 0),
        ("open_child", 0),
        ("create_file", 1),
    ];

    fn check(slots: &[table::SlotInfo], frozen: &[(&str, u16)], size: usize) {
        assert_eq!(slots.len(), frozen.len(), "a slot was added or removed");
        for (i, (s, (name, minor))) in slots.iter().zip(frozen).enumerate() {
            assert_eq!((s.name, s.minor, s.offset), (*name, *minor, 8 + 8 * i));
        }
        assert_eq!(size, 8 + 8 * frozen.len());
        let mut minors: Vec<u16> = frozen.iter().map(|f| f.1).collect();
        assert!(
            minors.windows(2).all(|w| w[0] <= w[1]),
            "slots out of minor order"
        );
        minors.dedup();
    }

    #[test]
    fn every_slot_offset_is_frozen() {
        check(BcNodeVtbl::SLOTS, NODE, size_of::<BcNodeVtbl>());
        check(BcDriverVtbl::SLOTS, DRIVER, size_of::<BcDriverVtbl>());
        check(
            BcHostServicesVtbl::SLOTS,
            HOST_SERVICES,
            size_of::<BcHostServicesVtbl>(),
        );
    }

    /// The table size each minor's producers send (what `copy_table` reads).
    #[test]
    fn table_sizes_per_minor() {
        let node: Vec<usize> = (0..=6).map(BcNodeVtbl::size_at_minor).collect();
        assert_eq!(node, [56, 176, 192, 200, 200, 224, 224]);
        let drv: Vec<usize> = (0..=6).map(BcDriverVtbl::size_at_minor).collect();
        assert_eq!(drv, [64, 80, 96, 96, 96, 104, 112]);
        let host: Vec<usize> = (0..=6).map(BcHostServicesVtbl::size_at_minor).collect();
        assert_eq!(host, [32, 40, 40, 40, 40, 40, 40]);
    }

    /// The exported tables fill every slot and state this build's size.
    #[test]
    fn exported_tables_are_complete() {
        let t = node_export::table();
        assert_eq!(t.struct_size, size_of::<BcNodeVtbl>());
        let words: [usize; 28] = unsafe { std::mem::transmute(*t) };
        assert!(words[1..].iter().all(|w| *w != 0));
    }
}
