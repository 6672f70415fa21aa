//! A JSON todo API over kv. Reads are public; writes need a bearer token
//! with scope `todo:write`.
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

use droplet_sdk::{Error, Json, Request, Response, Result, Router, auth, droplet, kv};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const WRITE_SCOPE: &str = "todo:write";

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
    Router::new()
        .get("/todos", list)
        .post("/todos", create)
        .get("/todos/:id", read)
        .put("/todos/:id", update)
        .delete("/todos/:id", remove)
        .handle(req)
}

fn key(id: u64) -> String {
    format!("todo:{id:020}")
}

fn title(title: &str) -> Result<String> {
    let title = title.trim();
    match title.chars().count() {
        1..=200 => Ok(title.to_string()),
        _ => Err(Error::bad_request("title must be 1 to 200 characters")),
    }
}

fn load(id: u64) -> Result<Todo> {
    kv::get_json(&key(id))?.ok_or_else(|| Error::not_found(format!("no todo {id}")))
}

fn list(req: Request) -> Result<Json<Value>> {
    let limit = match req.query_as::<u32>("limit")? {
        None => 20,
        Some(limit @ 1..=100) => limit,
        Some(_) => return Err(Error::bad_request("limit must be 1 to 100")),
    };
    let cursor = req.query_param("cursor");
    let page = kv::list_keys("todo:", cursor.as_deref(), limit)?;
    let mut items = Vec::with_capacity(page.keys.len());
    for key in &page.keys {
        // A todo deleted since the listing is simply skipped.
        items.extend(kv::get_json::<Todo>(key)?);
    }
    Ok(Json(
        json!({ "items": items, "next_cursor": page.next_cursor }),
    ))
}

fn create(req: Request) -> Result<(u16, Json<Todo>)> {
    auth::require_scope(WRITE_SCOPE)?;
    let new: NewTodo = req.json()?;
    let todo = Todo {
        title: title(&new.title)?,
        id: kv::increment("next-id", 1)? as u64,
        done: new.done,
    };
    kv::set_json(&key(todo.id), &todo, None)?;
    Ok((201, Json(todo)))
}

fn read(req: Request) -> Result<Json<Todo>> {
    Ok(Json(load(req.param_as("id")?)?))
}

fn update(req: Request) -> Result<Json<Todo>> {
    auth::require_scope(WRITE_SCOPE)?;
    let id = req.param_as("id")?;
    let change: TodoUpdate = req.json()?;
    let mut todo = load(id)?;
    if let Some(new_title) = change.title {
        todo.title = title(&new_title)?;
    }
    todo.done = change.done.unwrap_or(todo.done);
    kv::set_json(&key(id), &todo, None)?;
    Ok(Json(todo))
}

fn remove(req: Request) -> Result<()> {
    auth::require_scope(WRITE_SCOPE)?;
    let id = req.param_as("id")?;
    match kv::delete(&key(id))? {
        true => Ok(()),
        false => Err(Error::not_found(format!("no todo {id}"))),
    }
}

droplet!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::{TestWorld, claims};

    #[test]
    fn writers_create_and_everyone_reads() {
        let mut world = TestWorld::new();
        let created = world.call(handle, Request::post("/todos", r#"{"title": "x"}"#));
        assert_eq!(created.status(), 401);
        world.set_caller(Some(claims("ann", &[WRITE_SCOPE])));
        let created = world.call(handle, Request::post("/todos", r#"{"title": " docs "}"#));
        assert_eq!(created.status(), 201);
        world.set_caller(None);
        let read = world.call(handle, Request::get("/todos/1"));
        assert_eq!(read.json_body::<Value>().unwrap()["title"], "docs");
        let list = world.call(handle, Request::get("/todos?limit=5"));
        assert_eq!(list.json_body::<Value>().unwrap()["items"][0]["id"], 1);
    }

    #[test]
    fn bad_input_is_a_400_naming_it() {
        let mut world = TestWorld::new().with_caller(claims("ann", &[WRITE_SCOPE]));
        for (body, code) in [
            (r#"{"title": ""}"#, "bad_request"),
            (r#"{"title": "x", "extra": 1}"#, "invalid_json"),
        ] {
            let response = world.call(handle, Request::post("/todos", body));
            assert_eq!(response.status(), 400);
            assert_eq!(
                response.json_body::<Value>().unwrap()["error"]["code"],
                code
            );
        }
        assert_eq!(world.call(handle, Request::get("/todos/abc")).status(), 400);
        assert_eq!(
            world.call(handle, Request::get("/todos?limit=0")).status(),
            400
        );
        assert_eq!(
            world.call(handle, Request::new("PATCH", "/todos")).status(),
            405
        );
    }
}
