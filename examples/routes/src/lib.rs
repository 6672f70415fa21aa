//! hello behind a 20-route table, for the benchmark that prices the
//! router: `GET /hello/{name}` is the last route added, and answers as the
//! `hello` example does. Never served by the quick start.

use droplet_sdk::{Request, Response, Router, config, droplet};

fn handle(req: Request) -> Response {
    let mut router = Router::new();
    for resource in ["users", "teams", "projects", "invoices", "orders", "events"] {
        router = router
            .get(&format!("/{resource}"), other)
            .post(&format!("/{resource}"), other)
            .get(&format!("/{resource}/:id"), other);
    }
    router
        .any("/static/*rest", other)
        .get("/hello/:name", hello)
        .handle(req)
}

fn other(_req: Request) -> &'static str {
    "another route\n"
}

fn hello(req: Request) -> String {
    let greeting = config::get_or("greeting", "Hello");
    format!(
        "{greeting} from droplet hello! You asked for {}\n",
        req.path()
    )
}

droplet!(handle);
