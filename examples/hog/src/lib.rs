//! Misbehaves on purpose: allocates memory until the host's cap refuses to
//! grow it, which aborts the instance. Used by the memory-cap tests.

use droplet_sdk::{Request, Response, droplet};

fn handle(_req: Request) -> Response {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really used.
        chunks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&chunks);
    }
}

droplet!(handle);
