//! Unit tests of the driver over block-core's test utilities.

mod io;
