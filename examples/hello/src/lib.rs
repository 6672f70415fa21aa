//! The smallest droplet: answers every request with a greeting.

use droplet_sdk::{Request, Response, droplet};

fn handle(req: Request) -> Response {
    let greeting = droplet_sdk::config::get("greeting").unwrap_or_else(|| "Hello".to_string());
    Response::text(format!(
        "{greeting} from droplet hello! You asked for {}\n",
        req.path()
    ))
}

droplet!(handle);
