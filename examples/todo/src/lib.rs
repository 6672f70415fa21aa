//! A JSON todo API over kv. Reads are public; writes need a bearer token
//! with scope `todo:write` (checked with `auth::caller()`).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /todos?cursor=&limit=` | `{"items": [...], "next_cursor"}` (limit 1..=100, default 20) |
//! | `POST /todos` `{"title", "done"?}` | 201 with the new item |
//! | `GET /todos/{id}` | the item, or 404 |
//! | `PUT /todos/{id}` `{"title"?, "done"?}` | the updated item |
//! | `DELETE /todos/{id}` | 204, or 404 |
//!
//! Every input is validated: a title is 1..=200 characters, `done` a
//! boolean, no other fields; bad input gets 400 with a JSON error.

use droplet_sdk::{Request, Response, auth, droplet, kv};
use serde::{Deserialize, Serialize};
use serde_json::json;

const WRITE_SCOPE: &str = "todo:write";
const MAX_TITLE: usize = 200;

#[derive(Serialize, Deserialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TodoUpdate {
    title: Option<String>,
    done: Option<bool>,
}

fn handle(req: Request) -> Response {
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    let result = match (req.method(), segments.as_slice()) {
        ("GET", ["todos"]) => list(&req),
        ("POST", ["todos"]) => writer(&req).and_then(|()| create(&req)),
        ("GET", ["todos", id]) => parse_id(id).and_then(read),
        ("PUT", ["todos", id]) => writer(&req)
            .and_then(|()| parse_id(id))
            .and_then(|id| update(id, &req)),
        ("DELETE", ["todos", id]) => writer(&req).and_then(|()| parse_id(id)).and_then(remove),
        (_, ["todos"] | ["todos", _]) => Err(Response::error(
            405,
            "method_not_allowed",
            "method not allowed here",
        )),
        _ => Err(Response::error(404, "not_found", "try /todos")),
    };
    result.unwrap_or_else(|response| response)
}

type Answer = Result<Response, Response>;

/// Writes need a caller with `todo:write`.
fn writer(_req: &Request) -> Result<(), Response> {
    match auth::caller() {
        None => {
            // The host verified any token already: say whether one was
            // missing or why it did not verify.
            let message = match auth::caller_error() {
                None => "writes need a bearer token".to_string(),
                Some(err) => {
                    let why = match err {
                        auth::Error::Malformed => "it is malformed".to_string(),
                        auth::Error::Expired => "it has expired".to_string(),
                        auth::Error::Invalid(why) | auth::Error::Unavailable(why) => why,
                    };
                    format!("the bearer token is invalid: {why}")
                }
            };
            Err(Response::error(401, "unauthorized", &message)
                .with_header("www-authenticate", "Bearer"))
        }
        Some(claims) if !claims.has_scope(WRITE_SCOPE) => Err(Response::error(
            403,
            "forbidden",
            "writes need the todo:write scope",
        )),
        Some(_) => Ok(()),
    }
}

fn key(id: u64) -> String {
    format!("todo:{id:020}")
}

fn parse_id(id: &str) -> Result<u64, Response> {
    id.parse()
        .map_err(|_| Response::error(400, "bad_request", "a todo id is a positive integer"))
}

fn storage(err: impl std::fmt::Display) -> Response {
    Response::error(503, "storage_unavailable", &err.to_string())
}

fn validate_title(title: &str) -> Result<(), Response> {
    let length = title.trim().chars().count();
    if length == 0 || length > MAX_TITLE {
        return Err(Response::error(
            400,
            "bad_request",
            "title must be 1 to 200 characters",
        ));
    }
    Ok(())
}

fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Response> {
    req.json()
        .map_err(|err| Response::error(400, "bad_request", &format!("invalid body: {err}")))
}

fn load(id: u64) -> Result<Todo, Response> {
    kv::get_json::<Todo>(&key(id))
        .map_err(storage)?
        .ok_or_else(|| Response::error(404, "not_found", &format!("no todo {id}")))
}

fn list(req: &Request) -> Answer {
    let limit = match req.query_param("limit") {
        None => 20,
        Some(limit) => match limit.parse::<u32>() {
            Ok(limit @ 1..=100) => limit,
            _ => {
                return Err(Response::error(
                    400,
                    "bad_request",
                    "limit must be 1 to 100",
                ));
            }
        },
    };
    let cursor = req.query_param("cursor");
    let page = kv::list_keys("todo:", cursor.as_deref(), limit).map_err(storage)?;
    let mut items = Vec::with_capacity(page.keys.len());
    for key in &page.keys {
        // A todo deleted since the listing is simply skipped.
        if let Some(todo) = kv::get_json::<Todo>(key).map_err(storage)? {
            items.push(todo);
        }
    }
    Ok(Response::json(
        &json!({ "items": items, "next_cursor": page.next_cursor }),
    ))
}

fn create(req: &Request) -> Answer {
    let new: NewTodo = body(req)?;
    validate_title(&new.title)?;
    let id = kv::increment("next-id", 1).map_err(storage)? as u64;
    let todo = Todo {
        id,
        title: new.title.trim().to_string(),
        done: new.done,
    };
    kv::set_json(&key(id), &todo, None).map_err(storage)?;
    Ok(Response::json(&todo).with_status(201))
}

fn read(id: u64) -> Answer {
    Ok(Response::json(&load(id)?))
}

fn update(id: u64, req: &Request) -> Answer {
    let change: TodoUpdate = body(req)?;
    let mut todo = load(id)?;
    if let Some(title) = change.title {
        validate_title(&title)?;
        todo.title = title.trim().to_string();
    }
    if let Some(done) = change.done {
        todo.done = done;
    }
    kv::set_json(&key(id), &todo, None).map_err(storage)?;
    Ok(Response::json(&todo))
}

fn remove(id: u64) -> Answer {
    if kv::delete(&key(id)).map_err(storage)? {
        Ok(Response::new(204))
    } else {
        Err(Response::error(404, "not_found", &format!("no todo {id}")))
    }
}

droplet!(handle);
