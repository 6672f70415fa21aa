//! Routing by method and path pattern, with path parameters.
//!
//! ```no_run
//! use droplet_sdk::{droplet, Json, Request, Response, Result, Router};
//!
//! fn handle(req: Request) -> Response {
//!     Router::new()
//!         .get("/todos", list)
//!         .get("/todos/:id", read)
//!         .any("/static/*rest", |req: Request| format!("file {}", req.param("rest").unwrap_or("")))
//!         .handle(req)
//! }
//!
//! fn list(_req: Request) -> Json<Vec<u64>> {
//!     Json(vec![1, 2])
//! }
//!
//! fn read(req: Request) -> Result<String> {
//!     let id: u64 = req.param_as("id")?;
//!     Ok(format!("todo {id}"))
//! }
//!
//! droplet!(handle);
//! ```
//!
//! A pattern's segments are literal (`todos`), a parameter (`:id`, one
//! segment) or, last, a wildcard (`*rest`, the rest of the path, possibly
//! empty). When several routes match, the most specific wins: a literal
//! before a parameter before a wildcard, segment by segment, then the first
//! added. A path that matches no route is a 404, and one that matches only
//! routes of other methods a 405 with `Allow`, both in the host's error
//! shape. `HEAD` is served by a `GET` route unless a `HEAD` route is given;
//! a trailing `/` is ignored.

use std::borrow::Cow;

use crate::request::percent_decode;
use crate::{Error, IntoResponse, Request, Response};

type Handler = Box<dyn Fn(Request) -> Response>;

/// Routes requests to handlers by method and path pattern.
///
/// Cheap to build per request (each request runs in a fresh instance):
/// adding a route stores its pattern as given (no copy for a `&'static
/// str`) and a handler that is a function allocates nothing; matching
/// allocates only the winning route's parameters.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    /// The first pattern that did not parse: every request is then a 500
    /// naming it (a router is built per request, so the author sees it at
    /// once).
    invalid: Option<String>,
}

struct Route {
    /// `None`: any method.
    method: Option<Cow<'static, str>>,
    pattern: Cow<'static, str>,
    handler: Handler,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("invalid", &self.invalid)
            .finish()
    }
}

/// Methods the shorthand methods name, kept without a copy.
fn method_name(method: &str) -> Option<Cow<'static, str>> {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    if method == "*" {
        return None;
    }
    Some(
        match KNOWN
            .iter()
            .find(|known| known.eq_ignore_ascii_case(method))
        {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(method.to_ascii_uppercase()),
        },
    )
}

impl Router {
    /// A router with no routes (every request is a 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `method` requests (`"*"`: any method) matching `pattern` to
    /// `handler`.
    ///
    /// ```
    /// use droplet_sdk::{Request, Router};
    ///
    /// let router = Router::new()
    ///     .route("OPTIONS", "/items", |_req: Request| "GET, POST")
    ///     .route("*", "/health", |_req: Request| "ok"); // any method
    /// assert_eq!(router.handle(Request::new("OPTIONS", "/items")).body_text(), Some("GET, POST"));
    /// ```
    pub fn route<R, F>(
        mut self,
        method: &str,
        pattern: impl Into<Cow<'static, str>>,
        handler: F,
    ) -> Self
    where
        F: Fn(Request) -> R + 'static,
        R: IntoResponse,
    {
        let pattern = pattern.into();
        match check(&pattern) {
            Ok(()) => self.routes.push(Route {
                method: method_name(method),
                pattern,
                handler: Box::new(move |req| handler(req).into_response()),
            }),
            Err(why) => {
                self.invalid
                    .get_or_insert_with(|| format!("route pattern `{pattern}`: {why}"));
            }
        }
        self
    }

    /// `GET` (and `HEAD`) requests matching `pattern`.
    pub fn get<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route("GET", pattern, handler)
    }

    /// `POST` requests matching `pattern`.
    pub fn post<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route("POST", pattern, handler)
    }

    /// `PUT` requests matching `pattern`.
    pub fn put<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route("PUT", pattern, handler)
    }

    /// `PATCH` requests matching `pattern`.
    pub fn patch<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route("PATCH", pattern, handler)
    }

    /// `DELETE` requests matching `pattern`.
    pub fn delete<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// Requests of any method matching `pattern`.
    pub fn any<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.route("*", pattern, handler)
    }

    /// Answers `req` with the most specific matching route's handler, or
    /// with 404, 405 or (for an invalid pattern) 500.
    ///
    /// ```
    /// use droplet_sdk::{Request, Router};
    ///
    /// let router = Router::new()
    ///     .get("/todos/:id", |req: Request| format!("todo {}", req.param("id").unwrap()))
    ///     .get("/todos/new", |_req: Request| "the form");
    /// assert_eq!(router.handle(Request::get("/todos/7")).body_text(), Some("todo 7"));
    /// assert_eq!(router.handle(Request::get("/todos/new")).body_text(), Some("the form"));
    /// assert_eq!(router.handle(Request::get("/nope")).status(), 404);
    /// let refused = router.handle(Request::new("DELETE", "/todos/7"));
    /// assert_eq!((refused.status(), refused.header("allow")), (405, Some("GET, HEAD")));
    /// ```
    pub fn handle(&self, mut req: Request) -> Response {
        if let Some(invalid) = &self.invalid {
            return Error::internal(invalid).respond();
        }
        // (specificity, method rank, route): lower is better.
        let mut best: Option<(u64, u8, &Route)> = None;
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(specificity) = specificity(&route.pattern, req.path()) else {
                continue;
            };
            let method_rank = match route.method.as_deref() {
                Some(method) if method == req.method() => 0,
                None => 1,
                Some("GET") if req.method() == "HEAD" => 2,
                Some(method) => {
                    allowed.push(method);
                    continue;
                }
            };
            if best.is_none_or(|(spec, rank, _)| (specificity, method_rank) < (spec, rank)) {
                best = Some((specificity, method_rank, route));
            }
        }
        if let Some((_, _, route)) = best {
            let params = params(&route.pattern, req.path());
            req.set_params(params);
            return (route.handler)(req);
        }
        if allowed.is_empty() {
            return Error::not_found(format!("no route for {} {}", req.method(), req.path()))
                .respond();
        }
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        allowed.sort_unstable();
        allowed.dedup();
        let allow = allowed.join(", ");
        Error::new(
            405,
            "method_not_allowed",
            format!(
                "{} is not allowed on {}: use {allow}",
                req.method(),
                req.path()
            ),
        )
        .with_header("allow", allow)
        .respond()
    }
}

/// The segments of a path or pattern, without the empty ones a leading or
/// trailing `/` leaves.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed.split('/').filter(|_| !trimmed.is_empty())
}

/// Whether `pattern` is one the router can match, or why not.
fn check(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("it must start with `/`".to_string());
    }
    let count = segments(pattern).count();
    for (i, part) in segments(pattern).enumerate() {
        let name = match part.strip_prefix(':') {
            Some(name) => name,
            None => match part.strip_prefix('*') {
                Some(_) if i + 1 != count => {
                    return Err(format!("the wildcard `{part}` must be the last segment"));
                }
                Some(name) => name,
                None => continue,
            },
        };
        if name.is_empty() {
            return Err(format!("segment {} needs a name after `{part}`", i + 1));
        }
        let taken = segments(pattern)
            .take(i)
            .any(|earlier| earlier.get(1..) == Some(name) && earlier.starts_with([':', '*']));
        if taken {
            return Err(format!("the parameter `{name}` appears twice"));
        }
    }
    Ok(())
}

/// How specific `pattern` is when `path` matches it (`None`: it does not):
/// two bits per segment, most significant first — a literal 0, a parameter
/// 1, a wildcard 2 — so that a smaller number is more specific, segment by
/// segment. Allocates nothing.
fn specificity(pattern: &str, path: &str) -> Option<u64> {
    let mut path = segments(path);
    let mut key = 0u64;
    for (i, part) in segments(pattern).enumerate() {
        let shift = 62u32.saturating_sub(2 * i as u32);
        if part.starts_with('*') {
            return Some(key | (2 << shift));
        }
        let segment = path.next()?;
        if part.starts_with(':') {
            key |= 1 << shift;
        } else if part != segment {
            return None;
        }
    }
    path.next().is_none().then_some(key)
}

/// The parameters `path` gives the matching `pattern`, percent-decoded.
fn params(pattern: &str, path: &str) -> Vec<(String, String)> {
    let mut values = segments(path);
    let mut params = Vec::new();
    for part in segments(pattern) {
        if let Some(name) = part.strip_prefix('*') {
            let rest: Vec<&str> = values.by_ref().collect();
            params.push((name.to_string(), percent_decode(&rest.join("/"), false)));
            break;
        }
        let value = values.next().unwrap_or_default();
        if let Some(name) = part.strip_prefix(':') {
            params.push((name.to_string(), percent_decode(value, false)));
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let echo = |name: &'static str| {
            move |req: Request| {
                let params: Vec<String> = req
                    .params()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{name} {}", params.join(" "))
            }
        };
        Router::new()
            .get("/", echo("root"))
            .get("/todos", echo("list"))
            .post("/todos", echo("create"))
            .get("/todos/:id", echo("read"))
            .delete("/todos/:id", echo("delete"))
            .get("/todos/:id/tags/:tag", echo("tag"))
            .get("/todos/special", echo("special"))
            .any("/static/*rest", echo("static"))
            .route("HEAD", "/only-head", echo("head"))
    }

    fn call(router: &Router, method: &str, path: &str) -> (u16, String) {
        let response = router.handle(Request::new(method, path));
        (
            response.status(),
            response.body_text().unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn routes_by_method_and_most_specific_pattern() {
        let router = router();
        assert_eq!(call(&router, "GET", "/"), (200, "root ".into()));
        assert_eq!(call(&router, "GET", "/todos/"), (200, "list ".into()));
        assert_eq!(call(&router, "POST", "/todos"), (200, "create ".into()));
        assert_eq!(call(&router, "GET", "/todos/7"), (200, "read id=7".into()));
        assert_eq!(
            call(&router, "GET", "/todos/special"),
            (200, "special ".into())
        );
        assert_eq!(call(&router, "HEAD", "/todos/7"), (200, "read id=7".into()));
        assert_eq!(
            call(&router, "GET", "/todos/a%20b/tags/x+y"),
            (200, "tag id=a b tag=x+y".into())
        );
        assert_eq!(
            call(&router, "PUT", "/static/css/site.css"),
            (200, "static rest=css/site.css".into())
        );
        assert_eq!(
            call(&router, "GET", "/static"),
            (200, "static rest=".into())
        );
        assert_eq!(call(&router, "HEAD", "/only-head"), (200, "head ".into()));
    }

    #[test]
    fn answers_404_and_405_in_the_host_error_shape() {
        let router = router();
        let (status, body) = call(&router, "GET", "/todos/7/more");
        assert_eq!(status, 404);
        assert!(body.contains(r#""code":"not_found""#), "{body}");
        let response = router.handle(Request::new("PATCH", "/todos/7"));
        assert_eq!(response.status(), 405);
        assert_eq!(response.header("allow"), Some("DELETE, GET, HEAD"));
        assert!(response.body_text().unwrap().contains("method_not_allowed"));
    }

    #[test]
    fn an_invalid_pattern_is_a_500_naming_it() {
        for bad in ["todos", "/a/*rest/b", "/:", "/:id/:id"] {
            let router = Router::new().get(bad, |_req: Request| "never");
            let response = router.handle(Request::get("/todos"));
            assert_eq!(response.status(), 500, "{bad}");
            assert!(router.invalid.as_deref().unwrap().contains(bad));
        }
    }
}
