//! Misbehaves on purpose: panics on every request, or, with config
//! `fail_percent`, on about that share of requests (a bad canary that
//! fails some of the time). The host answers 500 `droplet_trap` naming the
//! panic, and keeps serving everyone else.

use droplet_sdk::{Request, config, droplet};

fn handle(req: Request) -> String {
    let fail_percent: u32 = config::get_as("fail_percent").ok().flatten().unwrap_or(100);
    // The clock's nanoseconds are as good a die as any here.
    let roll = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_micros() % 100);
    if roll < fail_percent {
        panic!("droplet panicked on purpose at {}", req.path());
    }
    format!("survived at {}\n", req.path())
}

droplet!(handle);
