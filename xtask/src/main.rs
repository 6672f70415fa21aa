//! Project tasks, so that a fresh clone needs nothing but rustup's toolchain:
//!
//! - `cargo xtask serve [ARGS...]`: add the `wasm32-wasip2` target if it is
//!   missing, build the example droplets into `./droplets`, and start
//!   `droplet serve` on 127.0.0.1:8080 with its embedded defaults; extra
//!   arguments go to `droplet serve`.
//! - `cargo xtask test [ARGS...]`: check the module graph, build the
//!   example droplets, install Chromium for the dashboard's browser test if
//!   it is missing (apt-get), then run every test of the workspace; extra
//!   arguments go to `cargo test`. `cargo xtask test --fast [ARGS...]`: the
//!   module graph and the unit and property tests only (no host started,
//!   no example built).
//! - `cargo xtask layers`: check the host library's module graph (no
//!   import cycles; a `mod.rs` only declares and re-exports); `test` runs
//!   it first.
//! - `cargo xtask install [--root DIR]`: build the `droplet` binary (the same
//!   build `serve` runs) and copy it into `DIR/bin` (default: cargo's own
//!   bin directory, `$CARGO_HOME/bin`, which rustup puts on `PATH`).
//! - `cargo xtask examples [--out DIR]`: only build the example droplets.
//! - `cargo xtask bench [--short] [ARGS...]`: build the host, the native
//!   baseline and the examples in release mode, install `wrk` if it is
//!   missing, and run the load scenarios (see `bench/README.md`).
//!
//! The examples are built before `cargo test` starts, never from inside a
//! test: a nested cargo on the same target directory would wait forever on
//! the lock the outer one holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

mod layers;

const TARGET: &str = "wasm32-wasip2";
/// Examples built for the tests and benchmarks only: never copied into a droplets
/// directory that a host serves.
const TEST_ONLY: &[&str] = &[
    "hostile",
    "dirty",
    "routes",
    "pricing-fixed",
    "pricing-rekeyed",
];
/// The example droplets, as crates under `examples/`.
const EXAMPLES: &[&str] = &[
    "hello",
    "echo",
    "spin",
    "hog",
    "panic",
    "counter",
    "todo",
    "kvstore",
    "gateway",
    "proxy-hello",
    "sse",
    "hostile",
    "dirty",
    "aggregator",
    "routes",
    "pricing",
    "pricing-fixed",
    "pricing-rekeyed",
    "chores",
];

/// Examples with their own tests, which `cargo test` runs natively against
/// the SDK's test world (the others are only built for wasm32-wasip2).
const TESTED_EXAMPLES: &[&str] = &["todo", "kvstore", "gateway", "aggregator", "chores"];

/// Runs the task; a failure is one line saying what failed (no backtrace,
/// whatever `RUST_BACKTRACE` says: the task's own output says where).
fn main() -> std::process::ExitCode {
    match run_task() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    // Tolerate `cargo xtask serve -- --flag`: the flags are meant either way.
    let rest: Vec<String> = args.skip_while(|arg| arg == "--").collect();
    let root = workspace_root();
    match task.as_str() {
        "examples" => {
            let out = match rest.as_slice() {
                [] => root.join("droplets"),
                [flag, dir] if flag == "--out" => PathBuf::from(dir),
                _ => bail!("usage: cargo xtask examples [--out DIR]"),
            };
            build_examples(&root, &out)
        }
        "serve" => {
            announce_first_build(&root, "release");
            build_examples(&root, &root.join("droplets"))?;
            let mut serve = cargo(&root);
            serve.args([
                "run",
                "--release",
                "--package",
                "droplet-host",
                "--bin",
                "droplet",
                "--",
                "serve",
            ]);
            serve.args(&rest);
            run(&mut serve)
        }
        "install" => {
            let bin_dir = match rest.as_slice() {
                [] => cargo_home().join("bin"),
                [flag, dir] if flag == "--root" => PathBuf::from(dir).join("bin"),
                _ => bail!("usage: cargo xtask install [--root DIR]"),
            };
            announce_first_build(&root, "release");
            run(cargo(&root).args(HOST_RELEASE_BUILD))?;
            let built = target_dir(&root).join("release").join("droplet");
            std::fs::create_dir_all(&bin_dir)
                .with_context(|| format!("cannot create {}", bin_dir.display()))?;
            let installed = bin_dir.join("droplet");
            // Copy beside, then rename: a running `droplet` is never half-written.
            let partial = bin_dir.join(".droplet.partial");
            std::fs::copy(&built, &partial)
                .and_then(|_| std::fs::rename(&partial, &installed))
                .with_context(|| format!("cannot install {}", installed.display()))?;
            eprintln!("xtask: installed {}", installed.display());
            let on_path = std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir == bin_dir));
            if !on_path {
                eprintln!(
                    "xtask: {} is not on your PATH; add it, or run {}",
                    bin_dir.display(),
                    installed.display()
                );
            }
            Ok(())
        }
        "layers" => layers::run(&root),
        "test" => {
            layers::run(&root)?;
            let fast = rest.first().is_some_and(|arg| arg == "--fast");
            let rest = if fast { &rest[1..] } else { &rest[..] };
            let mut test = cargo(&root);
            test.args(["test", "--workspace"]);
            for example in EXAMPLES {
                if !TESTED_EXAMPLES.contains(example) {
                    test.args(["--exclude", example]);
                }
            }
            // xtask's own tests run on their own: in the same invocation its
            // dependencies' features would change the host's build.
            test.args(["--exclude", "xtask"]);
            if fast {
                // Unit and property tests only: no host started, no example
                // built.
                test.args(["--lib", "--bins"]);
                test.args(rest);
                run_tests(&mut test)?;
                return run_tests(cargo(&root).args(["test", "--package", "xtask"]));
            }
            announce_first_build(&root, "debug");
            build_examples(&root, &root.join("droplets"))?;
            ensure_browser();
            test.args(rest);
            test.env("DROPLET_EXAMPLES_DIR", examples_out(&root));
            run_tests(&mut test)
        }
        "bench" => {
            build_examples(&root, &root.join("droplets"))?;
            let mut build = cargo(&root);
            build.args([
                "build",
                "--release",
                "--package",
                "droplet-host",
                "--package",
                "droplet-bench",
                "--bins",
            ]);
            run(&mut build)?;
            ensure_wrk()?;
            let harness = target_dir(&root).join("release").join("droplet-bench");
            let mut bench = Command::new(harness);
            bench
                .args(&rest)
                .env("DROPLET_EXAMPLES_DIR", examples_out(&root));
            run(&mut bench)
        }
        _ => bail!(
            "usage: cargo xtask <task>\n\n\
             tasks:\n  \
             serve [ARGS...]     build the examples and serve them on 127.0.0.1:8080\n  \
             test [ARGS...]      build the examples and run every test\n  \
             test --fast [ARGS...] the unit and property tests only (seconds)\n  \
             layers              check the host's modules: no import cycles, mod.rs only declares\n  \
             install [--root DIR] build `droplet` and copy it into DIR/bin (default $CARGO_HOME/bin)\n  \
             examples [--out DIR] build the example droplets into DIR (default ./droplets)\n  \
             bench [--short]     run the load benchmarks (see bench/README.md)"
        ),
    }
}

/// `cargo build` arguments of the `droplet` binary in release mode: the
/// build `serve` runs too, so `install` after `serve` costs nothing.
const HOST_RELEASE_BUILD: &[&str] = &[
    "build",
    "--release",
    "--package",
    "droplet-host",
    "--bin",
    "droplet",
];

/// Says up front that the first build takes minutes, when the `droplet`
/// binary of `profile` has never been built here.
fn announce_first_build(root: &Path, profile: &str) {
    if !target_dir(root).join(profile).join("droplet").exists() {
        eprintln!(
            "xtask: first build: compiling the host (wasmtime, hyper, sled and ~350 crates) \
             takes several minutes (about 6 on two idle cores); later builds take seconds"
        );
    }
}

/// Cargo's home: `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    command.current_dir(root);
    command
}

/// Runs a `cargo test`; when it fails, says how to run again only what
/// failed (cargo's own summary above lists the failed tests by name).
fn run_tests(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        status.success(),
        "tests failed (listed under `failures:` above); run one again with \
         `cargo xtask test -- NAME`, or the fast tier with `cargo xtask test --fast`"
    );
    Ok(())
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

/// Cargo's target directory.
fn target_dir(root: &Path) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    if target_dir.is_absolute() {
        target_dir
    } else {
        root.join(target_dir)
    }
}

/// Where cargo puts the release builds of the examples.
fn examples_out(root: &Path) -> PathBuf {
    target_dir(root).join(TARGET).join("release")
}

/// Installs Debian `packages` with apt-get (updating the package lists
/// once if the first try fails); whether it worked.
fn apt_install(packages: &[&str]) -> bool {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .status()
            .is_ok_and(|status| status.success())
    };
    install()
        || (Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|status| status.success())
            && install())
}

/// Makes sure the `wrk` load generator is installed: from Debian's packages
/// when it is missing and apt-get is available.
fn ensure_wrk() -> Result<()> {
    let present = || Command::new("wrk").arg("--version").output().is_ok();
    if present() {
        return Ok(());
    }
    eprintln!("xtask: installing wrk with apt-get");
    ensure!(
        apt_install(&["wrk"]) && present(),
        "the benchmarks need wrk: install it (Debian/Ubuntu: `apt-get install wrk`)"
    );
    Ok(())
}

/// Installs Debian's `chromium` and `chromium-driver` for the dashboard's
/// browser test when they are missing and apt-get is available. Never
/// fails: without them that test is skipped and says why (unless
/// `DROPLET_REQUIRE_BROWSER=1`).
fn ensure_browser() {
    let present =
        || Path::new("/usr/bin/chromedriver").exists() && Path::new("/usr/bin/chromium").exists();
    if present() || std::env::var_os("CHROMEDRIVER").is_some() {
        return;
    }
    eprintln!(
        "xtask: installing chromium and chromium-driver with apt-get (the dashboard's browser test)"
    );
    if !(apt_install(&["chromium", "chromium-driver"]) && present()) {
        eprintln!("xtask: chromium could not be installed; the browser test will be skipped");
    }
}

/// Adds the wasm target when rustup is there and the target is not.
fn ensure_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(output) if output.status.success() => {
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.trim() == TARGET)
            {
                return Ok(());
            }
            eprintln!("xtask: adding the {TARGET} target with rustup");
            run(Command::new("rustup").args(["target", "add", TARGET]))
        }
        // No rustup: assume the toolchain was installed with the target.
        _ => Ok(()),
    }
}

/// Builds every example for wasm32-wasip2 in release mode and copies each
/// `{name}.wasm`, with its `{name}.toml` manifest when it has one, into `out`
/// — all but the [`TEST_ONLY`] ones, which the tests read from cargo's
/// output directory.
fn build_examples(root: &Path, out: &Path) -> Result<()> {
    ensure_target()?;
    let mut build = cargo(root);
    build.args(["build", "--release", "--target", TARGET]);
    for example in EXAMPLES {
        build.args(["--package", example]);
    }
    run(&mut build)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let built = examples_out(root);
    for example in EXAMPLES
        .iter()
        .filter(|example| !TEST_ONLY.contains(example))
    {
        let wasm = built.join(format!("{example}.wasm"));
        std::fs::copy(&wasm, out.join(format!("{example}.wasm")))
            .with_context(|| format!("cannot copy {}", wasm.display()))?;
        let manifest = root
            .join("examples")
            .join(example)
            .join(format!("{example}.toml"));
        if manifest.exists() {
            std::fs::copy(&manifest, out.join(format!("{example}.toml")))
                .with_context(|| format!("cannot copy {}", manifest.display()))?;
        }
    }
    eprintln!(
        "xtask: {} example droplets in {}",
        EXAMPLES.len() - TEST_ONLY.len(),
        out.display()
    );
    Ok(())
}
