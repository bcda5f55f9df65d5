//! The bitmap control call (`BlockNode::bitmap`): the operations of
//! `qemu-img bitmap` and two queries, described in JSON:
//!
//! * `{"op":"add","name":N,"granularity":G?,"disabled":bool?}`
//! * `{"op":"remove"|"clear"|"enable"|"disable","name":N}`
//! * `{"op":"merge","name":N,"source":S}`: `S` of this image into `N`;
//!   `{"op":"merge","name":N,"ranges":[[start,end],...]}`: dirty guest
//!   ranges (read with `get` from another image) into `N`;
//! * `{"op":"get","name":N}` → `{"name","granularity","enabled",
//!   "inconsistent","ranges":[[start,end],...]}`;
//! * `{"op":"list"}` → `[{"name","granularity","enabled","inconsistent"}]`.
//!
//! Changes live in memory and are stored at close or inactivation.

use super::dir::{self, MAX_BITMAPS, MAX_DIRECTORY_BYTES, MAX_GRANULARITY_BITS, MAX_NAME_BYTES};
use super::mem::DirtyBitmap;
use super::{Bitmap, BitmapState};
use crate::node::Qcow2Node;
use block_core::{BlockError, ErrorKind, Result};
use serde_json::{json, Value};

fn not_found(op: &str, name: &str) -> BlockError {
    BlockError::new(
        ErrorKind::NotFound,
        op,
        format!("Dirty bitmap '{name}' not found"),
    )
}

fn inconsistent(op: &str, name: &str) -> BlockError {
    BlockError::invalid(
        op,
        format!("Bitmap '{name}' is inconsistent and cannot be used"),
    )
}

fn find<'a>(st: &'a mut BitmapState, op: &str, name: &str) -> Result<&'a mut Bitmap> {
    st.list
        .iter_mut()
        .find(|b| b.name == name)
        .ok_or_else(|| not_found(op, name))
}

fn usable<'a>(st: &'a mut BitmapState, op: &str, name: &str) -> Result<&'a mut Bitmap> {
    let b = find(st, op, name)?;
    if b.inconsistent {
        return Err(inconsistent(op, name));
    }
    Ok(b)
}

fn describe(b: &Bitmap) -> Value {
    json!({
        "name": b.name,
        "granularity": 1u64 << b.gran_bits,
        "enabled": b.enabled,
        "inconsistent": b.inconsistent,
    })
}

impl Qcow2Node {
    /// Runs one bitmap operation (see the module doc); returns its JSON
    /// result (`null` for the modifying operations).
    pub(crate) fn bitmap_control(&self, request: &str) -> Result<String> {
        let req: Value = serde_json::from_str(request)
            .map_err(|e| BlockError::invalid("bitmap", format!("invalid bitmap request: {e}")))?;
        let op = req["op"].as_str().unwrap_or("");
        let name = req["name"].as_str().unwrap_or("");
        if matches!(op, "list" | "get") && self.geo().version < 3 {
            // Version 2 images cannot keep bitmaps (no autoclear bits).
            return Err(BlockError::unsupported_feature(
                "bitmap",
                "qcow2 v2 images do not support persistent bitmaps",
            ));
        }
        match op {
            "list" => {
                let st = self.bitmaps.lock();
                let v: Vec<Value> = st.list.iter().map(describe).collect();
                return Ok(Value::Array(v).to_string());
            }
            "get" => {
                let mut st = self.bitmaps.lock();
                let b = find(&mut st, op, name)?;
                let mut d = describe(b);
                let ranges: Vec<Value> = b
                    .data
                    .dirty_ranges()
                    .into_iter()
                    .map(|(s, e)| json!([s, e]))
                    .collect();
                d["ranges"] = Value::Array(ranges);
                return Ok(d.to_string());
            }
            "add" | "remove" | "clear" | "enable" | "disable" | "merge" => {}
            _ => {
                return Err(BlockError::invalid(
                    "bitmap",
                    format!("unknown bitmap operation '{op}'"),
                ))
            }
        }
        self.check_writable("bitmap")?;
        let mut st = self.bitmaps.lock();
        match op {
            "add" => self.bitmap_add(&mut st, name, &req)?,
            "remove" => {
                let i = st
                    .list
                    .iter()
                    .position(|b| b.name == name)
                    .ok_or_else(|| not_found(op, name))?;
                let b = st.list.remove(i);
                if let Some(d) = b.disk {
                    st.removed.push((d, b.disk_table));
                }
            }
            "clear" => usable(&mut st, op, name)?.data.clear(),
            "enable" => usable(&mut st, op, name)?.enabled = true,
            "disable" => usable(&mut st, op, name)?.enabled = false,
            "merge" => {
                if let Some(src) = req["source"].as_str() {
                    let add: DirtyBitmap = usable(&mut st, op, src)?.data.clone();
                    usable(&mut st, op, name)?.data.merge(&add);
                } else {
                    let size = self.meta_read().h.size;
                    let t = usable(&mut st, op, name)?;
                    for r in req["ranges"].as_array().into_iter().flatten() {
                        let s = r[0].as_u64().unwrap_or(0).min(size);
                        let e = r[1].as_u64().unwrap_or(0).min(size);
                        if e > s {
                            t.data.mark(s, e - s);
                        }
                    }
                }
            }
            _ => unreachable!("checked above"),
        }
        st.changed = true;
        self.bitmaps.update_tracking(&st);
        Ok("null".into())
    }

    fn bitmap_add(&self, st: &mut BitmapState, name: &str, req: &Value) -> Result<()> {
        let cs = self.geo().cs();
        let gran = match req["granularity"].as_u64() {
            Some(g) => g,
            None => cs.max(4096),
        };
        if gran < 512 || !gran.is_power_of_two() || gran > 1u64 << MAX_GRANULARITY_BITS {
            return Err(BlockError::invalid(
                "bitmap",
                "Granularity must be power of 2 and at least 512",
            ));
        }
        if st.list.iter().any(|b| b.name == name) {
            return Err(BlockError::invalid(
                "bitmap",
                format!("Bitmap already exists: {name}"),
            ));
        }
        let why = |msg: &str| {
            BlockError::invalid(
                "bitmap",
                format!(
                    "Can't make bitmap '{name}' persistent in '{}': {msg}",
                    self.filename
                ),
            )
        };
        if self.geo().version < 3 {
            return Err(why("Cannot store dirty bitmaps in qcow2 v2 files"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(why(&format!(
                "Name length exceeds maximum ({MAX_NAME_BYTES} characters)"
            )));
        }
        if st.list.len() as u32 >= MAX_BITMAPS {
            return Err(why(
                "Maximum number of persistent bitmaps is already reached",
            ));
        }
        let dir_bytes: u64 = st
            .list
            .iter()
            .map(|b| dir::entry_size(b.name.len(), 0))
            .sum::<u64>()
            + dir::entry_size(name.len(), 0);
        if dir_bytes > MAX_DIRECTORY_BYTES {
            return Err(why("Not enough space in the bitmap directory"));
        }
        let size = self.meta_read().h.size;
        let gran_bits = gran.trailing_zeros();
        st.list.push(Bitmap {
            name: name.to_string(),
            gran_bits,
            enabled: !req["disabled"].as_bool().unwrap_or(false),
            inconsistent: false,
            data: DirtyBitmap::new(gran_bits, size, cs),
            disk: None,
            disk_table: Vec::new(),
        });
        Ok(())
    }
}
