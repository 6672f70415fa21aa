//! Attacks the host from inside, one attack per path, for the hardening
//! tests. Each path is something a hostile droplet author could deploy:
//!
//! | path | attack | the host's answer |
//! | --- | --- | --- |
//! | `/remember?marker=M` | looks for an earlier request's marker in its static memory and heap, then leaves `M` there | 200, `{"static": null, "heap": null}`: nothing survives a request |
//! | `/escape` | reads files, the environment, opens sockets | 200 with every attempt denied |
//! | `/stack` | unbounded recursion | 500 `droplet_trap` |
//! | `/huge?mb=N` | an N MiB response body | 502 `invalid_response` past 16 MiB |
//! | `/huge-chunk?mb=N` | an N MiB body offered in one piece, past the SDK | 502 `invalid_response` past 16 MiB, nothing copied |
//! | `/host-loop` | calls a host import in a loop, forever | 504 `budget_exceeded` |

use std::alloc::{Layout, alloc};

use droplet_sdk::{Request, Response, droplet, kv};
use serde_json::json;

/// What a marker looks like in memory.
const TAG: &[u8] = b"DROPLET-MARKER:";
/// Bytes of static memory and of heap the markers are written to.
const AREA: usize = 64 * 1024;

/// Static memory: a fresh instance must start with it zeroed.
static mut STATIC_AREA: [u8; AREA] = [0; AREA];

fn handle(req: Request) -> Response {
    match req.path() {
        "/remember" => remember(req.query_param("marker").unwrap_or_default()),
        "/escape" => escape(),
        "/stack" => Response::text(format!("{}", recurse(1))),
        "/huge" => {
            let mb: usize = req
                .query_param("mb")
                .and_then(|mb| mb.parse().ok())
                .unwrap_or(20);
            Response::new(200).with_body(vec![b'h'; mb << 20])
        }
        "/huge-chunk" => {
            let mb: usize = req
                .query_param("mb")
                .and_then(|mb| mb.parse().ok())
                .unwrap_or(100);
            // Straight to the import, in one piece: the host must refuse it
            // without copying it.
            let offered =
                droplet_sdk::bindings::fp::droplet::response_body::write(&vec![b'h'; mb << 20]);
            Response::json(&json!({ "offered_mb": mb, "refused": offered.is_err() }))
        }
        "/host-loop" => loop {
            let _ = kv::exists("spin");
        },
        _ => Response::error(404, "not_found", "no such attack"),
    }
}

/// Reports a marker an earlier request left in static memory or in the
/// heap, then leaves `marker` in both.
fn remember(marker: String) -> Response {
    let stamp: Vec<u8> = [TAG, marker.as_bytes()].concat();
    // SAFETY: an instance serves one request on one thread; nothing else
    // touches the static area while this runs.
    let area = unsafe { &mut *std::ptr::addr_of_mut!(STATIC_AREA) };
    let in_static = find_marker(area);
    let layout = Layout::from_size_align(AREA, 8).expect("layout");
    // SAFETY: `layout` has a non-zero size. The block is read with volatile
    // byte loads before it is written: on purpose, since whatever a previous
    // instance left in this memory is exactly what the test looks for.
    let heap = unsafe { alloc(layout) };
    let in_heap = if heap.is_null() {
        None
    } else {
        // SAFETY: `heap` points to `AREA` bytes just allocated.
        let bytes: Vec<u8> = (0..AREA)
            .map(|i| unsafe { heap.add(i).read_volatile() })
            .collect();
        let found = find_marker(&bytes);
        for (i, byte) in stamp.iter().cycle().take(AREA).enumerate() {
            // SAFETY: `i < AREA`, inside the block.
            unsafe { heap.add(i).write_volatile(*byte) };
        }
        found
    };
    for (slot, byte) in area.iter_mut().zip(stamp.iter().cycle()) {
        *slot = *byte;
    }
    Response::json(&json!({ "static": in_static, "heap": in_heap }))
}

/// The first marker in `bytes`, if any.
fn find_marker(bytes: &[u8]) -> Option<String> {
    let at = bytes.windows(TAG.len()).position(|window| window == TAG)?;
    let rest = &bytes[at + TAG.len()..];
    let end = rest
        .windows(TAG.len())
        .position(|window| window == TAG)
        .unwrap_or(rest.len().min(64));
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Tries what the sandbox must refuse; says what happened to each attempt.
fn escape() -> Response {
    let outcome = |result: Result<String, String>| match result {
        Ok(what) => json!({ "allowed": what }),
        Err(why) => json!({ "denied": why }),
    };
    let read_root = std::fs::read_dir("/")
        .map(|entries| format!("{} entries", entries.count()))
        .map_err(|err| err.to_string());
    let read_passwd = std::fs::read_to_string("/etc/passwd")
        .map(|text| format!("{} bytes", text.len()))
        .map_err(|err| err.to_string());
    let write_tmp = std::fs::write("/tmp/droplet-escape", b"x")
        .map(|()| "wrote /tmp/droplet-escape".to_string())
        .map_err(|err| err.to_string());
    let environment: Vec<String> = std::env::vars().map(|(key, _)| key).collect();
    let connect = std::net::TcpStream::connect("127.0.0.1:5432")
        .map(|_| "connected to 127.0.0.1:5432".to_string())
        .map_err(|err| err.to_string());
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .map(|_| "listening".to_string())
        .map_err(|err| err.to_string());
    let resolve = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80))
        .map(|addrs| format!("{} addresses", addrs.count()))
        .map_err(|err| err.to_string());
    Response::json(&json!({
        "read_root": outcome(read_root),
        "read_passwd": outcome(read_passwd),
        "write_tmp": outcome(write_tmp),
        "environment": environment,
        "connect": outcome(connect),
        "listen": outcome(listen),
        "resolve": outcome(resolve),
    }))
}

/// Recurses until the stack runs out (the optimizer must not turn it into
/// a loop: each frame keeps data alive across the call).
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + frame[depth as usize % 64]
}

droplet!(handle);
