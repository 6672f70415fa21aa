//! A Python `wasi:http/proxy` component, built with componentize-py from
//! PyPI (`tests/components/python/app.py`), served the way `wasmtime serve`
//! serves it: loaded without a manifest though it links
//! `wasi:http/outgoing-handler`, its outbound requests denied when made,
//! an unfinished body ended cleanly, a missing response a 500 at once.
//!
//! The set-up installs componentize-py into a virtual environment under
//! the target directory and builds the component there, both kept between
//! runs. A machine without Python, or without the package index, skips the
//! test and says why (CI, which has both, sets `DROPLET_REQUIRE_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::HostBuilder;

/// The componentize-py release the component is built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The `wasi:http` world, as the WIT files of the wasmtime-wasi-http crate
/// this host is built on declare it.
const WORLD: &str = "wasi:http/proxy@0.2.12";

/// Where the set-up keeps its virtual environment and builds.
fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance-python")
}

/// Runs `command`; `Err` says what failed and what it printed.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|err| format!("cannot run {shown}: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// componentize-py in a virtual environment of its own (installed once).
fn componentize_py(dir: &Path) -> Result<PathBuf, String> {
    let venv = dir.join(format!("venv-{}", COMPONENTIZE_PY.replace("==", "-")));
    let tool = venv.join("bin/componentize-py");
    if tool.exists() {
        return Ok(tool);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(COMPONENTIZE_PY))?;
    Ok(tool)
}

/// The wasmtime-wasi-http crate's `wit` folder, from cargo's metadata.
fn wasi_http_wit() -> Result<PathBuf, String> {
    // This machine's platform only: the others' crates are not downloaded.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|err| format!("cannot run rustc -vV: {err}"))?;
    let platform = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .ok_or("rustc -vV names no host")?;
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &platform])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|err| format!("cannot run cargo metadata: {err}"))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|err| format!("cargo metadata: {err}"))?;
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "wasmtime-wasi-http")
        .and_then(|package| package["manifest_path"].as_str())
        .map(|manifest| Path::new(manifest).with_file_name("wit"))
        .ok_or_else(|| "wasmtime-wasi-http is not in cargo's metadata".to_string())
}

/// The component, built from `tests/components/python` (rebuilt when the
/// app changes).
fn python_component() -> Result<Vec<u8>, String> {
    let dir = work_dir();
    std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let app = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/components/python");
    let source = std::fs::read(app.join("app.py")).map_err(|err| format!("app.py: {err}"))?;
    let key = source
        .iter()
        .chain(COMPONENTIZE_PY.as_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
    let built = dir.join(format!("app-{key:016x}.wasm"));
    if !built.exists() {
        let tool = componentize_py(&dir)?;
        let wit = wasi_http_wit()?;
        let partial = dir.join("app.wasm.partial");
        run(Command::new(tool)
            .arg("-d")
            .arg(wit)
            .args(["-w", WORLD, "componentize", "-p"])
            .arg(&app)
            .arg("app")
            .arg("-o")
            .arg(&partial))?;
        std::fs::rename(&partial, &built).map_err(|err| format!("{}: {err}", built.display()))?;
    }
    std::fs::read(&built).map_err(|err| format!("{}: {err}", built.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_componentize_py_component_runs_as_on_wasmtime_serve() {
    let component = match tokio::task::spawn_blocking(python_component).await.unwrap() {
        Ok(component) => component,
        Err(reason) if std::env::var_os("DROPLET_REQUIRE_PYTHON").is_some() => {
            panic!("DROPLET_REQUIRE_PYTHON is set, but: {reason}")
        }
        Err(reason) => {
            println!("SKIPPED: no componentize-py component on this machine: {reason}");
            return;
        }
    };
    let host = HostBuilder::new()
        // No manifest: it links outgoing-handler, as every Python app does.
        .file("py.wasm", component)
        .cache(&work_dir().join("code-cache"))
        .start_timeout(Duration::from_secs(600))
        .start()
        .await;
    // The host listened before it compiled.
    let messages: Vec<String> = host
        .log_lines()
        .iter()
        .filter_map(|line| line["message"].as_str().map(str::to_string))
        .collect();
    let at = |message: &str| messages.iter().position(|m| m.starts_with(message));
    assert!(at("listening on") < at("droplets loaded"), "{messages:?}");

    let reply = host.get("/py/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello from Python\n");
    assert_eq!(reply.header("content-type"), Some("text/plain"));

    // Denied when it is made, with the standard error code.
    let reply = host.get("/py/outbound").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply.text().contains("HttpRequestDenied"),
        "{}",
        reply.text()
    );

    // The head was out: the body ends cleanly with what was written.
    let reply = host.get("/py/unfinished").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "partial"));

    // Nothing was sent: a 500 at once.
    let started = Instant::now();
    let message = host
        .get("/py/no-response")
        .await
        .assert_error(500, "droplet_trap");
    assert!(message.contains("without setting a response"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(30));

    assert_eq!(host.get("/py/print").await.status, 200);
    host.wait_for_log(
        |line| line["source"] == "stderr" && line["message"] == "start a print 1234",
        Duration::from_secs(30),
    )
    .await
    .expect("its stderr line");
}
