//! `device_server`: bytes, clock advances and power cuts into the full request server
//! with a live pump core on RAM-backed NOR flash. The input format and every invariant
//! checked after each step are described in `thecal_fuzz::device`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thecal_fuzz::device::{CountingAlloc, Device};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    Device::new().run(data);
});
