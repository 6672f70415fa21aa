//! Dirties memory on purpose, for the benchmarks: `GET /?kib=N` allocates
//! N KiB and writes one byte in every 4 KiB page of it, so each request
//! leaves N/4 dirty pages for the host to wipe before the slot is reused.

use droplet_sdk::{Request, Response, droplet};

/// The host's page size: one write per page dirties it.
const PAGE: usize = 4096;
/// The most a request may ask for (the default `memory_mb` is 64).
const MAX_KIB: usize = 32 * 1024;

fn handle(req: Request) -> Response {
    let kib = req
        .query_param("kib")
        .and_then(|kib| kib.parse::<usize>().ok())
        .unwrap_or(64)
        .min(MAX_KIB);
    let mut memory = vec![0u8; kib * 1024];
    for (index, page) in memory.chunks_mut(PAGE).enumerate() {
        page[0] = index as u8 | 1;
    }
    let checksum: u32 = memory.iter().step_by(PAGE).map(|&b| u32::from(b)).sum();
    std::hint::black_box(&memory);
    Response::text(format!("dirtied {kib} KiB ({checksum})\n"))
}

droplet!(handle);
