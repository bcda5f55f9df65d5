//! The generic part of `qemu-img measure` for formats that allocate their
//! data in clusters: the virtual size the new image gets, the bytes a copy
//! of the source's data allocates, and the required / fully-allocated
//! answer around the format's own metadata formula.

use crate::error::{BlockError, Result};
use crate::info::{MeasureRequest, MeasureResult};
use crate::options::{OptDesc, OptionValues};
use crate::types::Preallocation;

/// What a format decided from its create options that the generic
/// measure needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasurePlan {
    /// The allocation unit (cluster) in bytes, a power of two.
    pub cluster_size: u64,
    /// The `size` create option (0: not given).
    pub size_option: u64,
    /// The new image gets a backing file: every cluster of a source counts
    /// (the backing file may share nothing with the source).
    pub has_backing: bool,
    /// The preallocation mode (`falloc` and `full` count every cluster).
    pub preallocation: Preallocation,
}

impl MeasurePlan {
    /// The plan from create options `o` (parsed against
    /// [`crate::options::loosen_enums`] of `schema`): `size`,
    /// `backing_file` and `preallocation`, a mode `schema` does not list
    /// refused in QEMU's words.
    pub fn from_options(
        o: &OptionValues,
        schema: &[OptDesc],
        cluster_size: u64,
    ) -> Result<MeasurePlan> {
        if let Some(v) = o.unlisted(schema, "preallocation") {
            let msg = format!("invalid parameter value: {v}");
            return Err(BlockError::invalid("measure", msg));
        }
        Ok(MeasurePlan {
            cluster_size,
            size_option: o.get_size("size")?.unwrap_or(0),
            has_backing: o.get("backing_file").is_some(),
            preallocation: o.get_preallocation(),
        })
    }
}

/// Bytes of data clusters a copy of the data `extents` (ascending guest
/// ranges) of a source of `source_size` bytes allocates: each extent counts
/// up to the end of its last cluster and the walk resumes there, as QEMU's
/// block-status loop does.
pub fn allocated_bytes(extents: &[(u64, u64)], source_size: u64, cluster_size: u64) -> u64 {
    let mut required = 0u64;
    let mut pos = 0u64;
    for &(off, len) in extents {
        let end = off.saturating_add(len).min(source_size);
        let start = off.max(pos);
        if start >= end {
            continue;
        }
        let pnum = end.div_ceil(cluster_size) * cluster_size - start;
        required += start % cluster_size + pnum;
        pos = start + pnum;
    }
    required
}

/// Measures as QEMU's cluster formats do: the virtual size is the `size`
/// option, or the source's size (always when data extents are given),
/// rounded up to clusters and checked by `check_size`;
/// `fully_allocated(virtual_size)` is the format's size with every cluster
/// allocated, and `required` that size's metadata plus the data clusters
/// the source needs. `bitmaps` is left to the format.
pub fn measure_clusters(
    req: &MeasureRequest,
    plan: &MeasurePlan,
    check_size: impl Fn(u64) -> Result<()>,
    fully_allocated: impl Fn(u64) -> u64,
) -> Result<MeasureResult> {
    let cs = plan.cluster_size;
    let round = |x: u64| x.div_ceil(cs) * cs;
    let mut virtual_size = round(plan.size_option);
    if req.data_extents.is_none() && plan.size_option == 0 {
        virtual_size = round(req.virtual_size);
    }
    check_size(virtual_size)?;
    let mut required = 0u64;
    if let Some(extents) = &req.data_extents {
        virtual_size = round(req.virtual_size);
        check_size(virtual_size)?;
        required = match plan.has_backing {
            true => virtual_size,
            false => allocated_bytes(extents, req.virtual_size, cs),
        };
    }
    if matches!(
        plan.preallocation,
        Preallocation::Full | Preallocation::Falloc
    ) {
        required = virtual_size;
    }
    let fully_allocated = fully_allocated(virtual_size);
    Ok(MeasureResult {
        required: fully_allocated - virtual_size + required,
        fully_allocated,
        bitmaps: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BlockError;

    const CS: u64 = 4096;

    fn plan(size_option: u64) -> MeasurePlan {
        MeasurePlan {
            cluster_size: CS,
            size_option,
            has_backing: false,
            preallocation: Preallocation::Off,
        }
    }

    fn req(virtual_size: u64, extents: Option<Vec<(u64, u64)>>) -> MeasureRequest {
        MeasureRequest {
            options: Vec::new(),
            virtual_size,
            data_extents: extents,
            source_bitmaps: None,
        }
    }

    /// A toy formula: one metadata cluster per 16 data clusters, plus one.
    fn toy(vs: u64) -> u64 {
        vs + (vs / CS).div_ceil(16) * CS + CS
    }

    #[test]
    fn extents_count_to_their_last_cluster() {
        assert_eq!(allocated_bytes(&[(0, 1)], 1 << 20, CS), CS);
        // Two extents in one cluster count it once.
        assert_eq!(allocated_bytes(&[(0, 10), (100, 10)], 1 << 20, CS), CS);
        // An extent starting inside a cluster counts the whole cluster.
        assert_eq!(allocated_bytes(&[(CS + 5, CS)], 1 << 20, CS), 2 * CS);
        // Clipped at the source size; nothing past it counts.
        assert_eq!(allocated_bytes(&[(0, 1 << 30)], 3 * CS, CS), 3 * CS);
        assert_eq!(allocated_bytes(&[(4 * CS, CS)], 3 * CS, CS), 0);
    }

    #[test]
    fn empty_and_copied_images() {
        let r = measure_clusters(&req(0, None), &plan(10 * CS + 1), |_| Ok(()), toy).unwrap();
        assert_eq!(r.fully_allocated, toy(11 * CS));
        assert_eq!(r.required, toy(11 * CS) - 11 * CS);
        // Data extents: the source's size wins over the size option.
        let q = req(32 * CS, Some(vec![(0, 2 * CS)]));
        let r = measure_clusters(&q, &plan(CS), |_| Ok(()), toy).unwrap();
        assert_eq!(r.fully_allocated, toy(32 * CS));
        assert_eq!(r.required, toy(32 * CS) - 30 * CS);
        let full = MeasurePlan {
            preallocation: Preallocation::Full,
            ..plan(0)
        };
        let r = measure_clusters(&q, &full, |_| Ok(()), toy).unwrap();
        assert_eq!(r.required, r.fully_allocated);
        let backed = MeasurePlan {
            has_backing: true,
            ..plan(0)
        };
        let r = measure_clusters(&q, &backed, |_| Ok(()), toy).unwrap();
        assert_eq!(r.required, r.fully_allocated);
    }

    #[test]
    fn plan_from_create_options() {
        let schema = crate::options::plain_create_options();
        let loose = crate::options::loosen_enums(&schema);
        let o = OptionValues::parse_str(&loose, "size=1M,preallocation=full").unwrap();
        let p = MeasurePlan::from_options(&o, &schema, CS).unwrap();
        assert_eq!((p.size_option, p.has_backing), (1 << 20, false));
        assert_eq!((p.cluster_size, p.preallocation), (CS, Preallocation::Full));
        let o = OptionValues::parse_str(&loose, "preallocation=some").unwrap();
        let e = MeasurePlan::from_options(&o, &schema, CS).unwrap_err();
        assert_eq!(e.message, "invalid parameter value: some");
    }

    #[test]
    fn size_check_refuses() {
        let too_big = |vs: u64| match vs > 8 * CS {
            true => Err(BlockError::invalid("measure", "too large")),
            false => Ok(()),
        };
        let e = measure_clusters(&req(0, None), &plan(9 * CS), too_big, toy).unwrap_err();
        assert_eq!(e.message, "too large");
        let q = req(9 * CS, Some(vec![]));
        assert!(measure_clusters(&q, &plan(CS), too_big, toy).is_err());
    }
}
