//! The smallest droplet: answers every request with a greeting.

use droplet_sdk::{Request, config, droplet};

fn handle(req: Request) -> String {
    let greeting = config::get_or("greeting", "Hello");
    format!(
        "{greeting} from droplet hello! You asked for {}\n",
        req.path()
    )
}

droplet!(handle);
