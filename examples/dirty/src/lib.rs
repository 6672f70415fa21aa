//! Dirties memory on purpose, for the benchmarks.
//!
//! - `GET /?kib=N` allocates N KiB (zeroed) and writes one byte in every
//!   4 KiB page of it, so each request leaves N/4 dirty pages, in one run,
//!   for the host to wipe before the slot is reused.
//! - `GET /?pages=N&stride=S` writes one byte in N pages, one page in every
//!   S, of memory it never zeroes: with S = 1 the N pages are one run, with
//!   S = 2 they are N runs with a clean page between each two. The host finds
//!   dirty pages as runs (PAGEMAP_SCAN), a limited number of runs per scan.

use droplet_sdk::{Request, Response, droplet};

/// The host's page size: one write per page dirties it.
const PAGE: usize = 4096;
/// The most a request may ask for (the default `memory_mb` is 64).
const MAX_KIB: usize = 32 * 1024;

fn number(req: &Request, name: &str) -> Option<usize> {
    req.query_param(name).and_then(|value| value.parse().ok())
}

fn handle(req: Request) -> Response {
    if let Some(pages) = number(&req, "pages") {
        let stride = number(&req, "stride").unwrap_or(1).max(1);
        return scattered(pages.min(MAX_KIB / 4 / stride), stride);
    }
    let kib = number(&req, "kib").unwrap_or(64).min(MAX_KIB);
    let mut memory = vec![0u8; kib * 1024];
    for (index, page) in memory.chunks_mut(PAGE).enumerate() {
        page[0] = index as u8 | 1;
    }
    let checksum: u32 = memory.iter().step_by(PAGE).map(|&b| u32::from(b)).sum();
    std::hint::black_box(&memory);
    Response::text(format!("dirtied {kib} KiB ({checksum})\n"))
}

/// Writes one byte in `pages` pages, `stride` pages apart, of a fresh
/// allocation it does not zero (the pages between stay untouched).
fn scattered(pages: usize, stride: usize) -> Response {
    // One page more, so the first written byte can sit on a page boundary.
    let mut memory: Vec<u8> = Vec::with_capacity((pages * stride + 1) * PAGE);
    let spare = memory.spare_capacity_mut();
    let first = spare.as_ptr().align_offset(PAGE);
    let mut checksum = 0u32;
    for index in 0..pages {
        let value = index as u8 | 1;
        spare[first + index * stride * PAGE].write(value);
        checksum += u32::from(value);
    }
    std::hint::black_box(&memory);
    Response::text(format!(
        "dirtied {pages} pages, one in {stride} ({checksum})\n"
    ))
}

droplet!(handle);
