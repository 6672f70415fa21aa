//! Misbehaves on purpose: panics on every request. The host answers 500
//! `droplet_trap` naming the panic, and keeps serving everyone else.

use droplet_sdk::{Request, Response, droplet};

fn handle(req: Request) -> Response {
    panic!("droplet panicked on purpose at {}", req.path());
}

droplet!(handle);
