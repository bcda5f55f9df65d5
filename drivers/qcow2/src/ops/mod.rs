//! Operations on qcow2 images above the I/O layer: check and repair
//! (check.rs), amend (amend.rs), measure (measure.rs), internal snapshot
//! create, apply and delete (snapshot.rs), the COPIED-flag walk check
//! and snapshots share (copied.rs), create (create.rs), make_empty and
//! the backing-file change (make_empty.rs), and the management
//! capabilities that dispatch to them (control.rs). They may import every
//! lower folder and `crate::open` (create opens the image it made);
//! nothing below imports them.

pub(crate) mod amend;
pub(crate) mod check;
pub(crate) mod control;
pub(crate) mod copied;
pub(crate) mod create;
pub(crate) mod make_empty;
pub mod measure;
pub(crate) mod snapshot;
