//! Misbehaves on purpose: loops forever without calling the host, so only the
//! host's latency budget can stop it. Used by the budget tests and benchmarks.

use droplet_sdk::{Request, Response, droplet};

fn handle(_req: Request) -> Response {
    let mut counter: u64 = 0;
    loop {
        // `black_box` keeps the optimiser from proving the loop pointless.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

droplet!(handle);
