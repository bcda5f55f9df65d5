//! blk qcow2 driver (being written).
