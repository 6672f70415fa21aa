//! hello behind a 20-route table, for the benchmark that prices the
//! router: `GET /hello/{name}` is the last route added, and answers as the
//! `hello` example does. Never served by the quick start.

use droplet_sdk::{Request, Response, Router, config, droplet};

fn handle(req: Request) -> Response {
    Router::new()
        .get("/users", other)
        .post("/users", other)
        .get("/users/:id", other)
        .get("/teams", other)
        .post("/teams", other)
        .get("/teams/:id", other)
        .get("/projects", other)
        .post("/projects", other)
        .get("/projects/:id", other)
        .get("/invoices", other)
        .post("/invoices", other)
        .get("/invoices/:id", other)
        .get("/orders", other)
        .post("/orders", other)
        .get("/orders/:id", other)
        .get("/events", other)
        .post("/events", other)
        .get("/events/:id", other)
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
