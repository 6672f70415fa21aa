//! The dashboard in a real headless browser: Debian's `chromium` driven by
//! `chromedriver` through WebDriver (`fantoccini`). Skipped with a printed
//! reason when either is missing, unless `DROPLET_REQUIRE_BROWSER=1` (set by
//! `.ci/run`, which installs them), where a missing browser fails.
//! Screenshots land in `target/tmp/dashboard-screenshots/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{
    Host, HostBuilder, TEST_SECRET, admin_request, claims_with_scope, hs256_token, reqwest_like,
};

/// `chromedriver` and `chromium`, from the environment or Debian's paths.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    let chrome = std::env::var_os("CHROME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    for (path, package) in [(&driver, "chromium-driver"), (&chrome, "chromium")] {
        if !path.exists() {
            return Err(format!(
                "{} is missing (apt-get install chromium chromium-driver, or set CHROMEDRIVER/CHROME); `.ci/run` installs {package}",
                path.display()
            ));
        }
    }
    Ok((driver, chrome))
}

/// A running chromedriver; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(driver: &Path) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn open_browser(driver: &Driver, chrome: &Path, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": chrome,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("open a browser session")
}

/// Polls the page until `check` holds, or fails naming `what`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn screenshot(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("save the screenshot");
    println!("screenshot: {}", path.display());
}

/// Whether the page is no wider than the window (nothing pushed off-screen;
/// the table scrolls inside its own box).
async fn fits(client: &Client) -> bool {
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("measure the page");
    let scroll = widths[0].as_f64().unwrap_or(f64::MAX);
    let window = widths[1].as_f64().unwrap_or(0.0);
    scroll <= window + 1.0
}

/// Whether the page has been laid out for a phone-sized window (the resize
/// has reached the page), so that what [`fits`] measures is that layout.
async fn narrow(client: &Client) -> bool {
    client
        .execute("return window.innerWidth;", vec![])
        .await
        .ok()
        .and_then(|width| width.as_f64())
        .is_some_and(|width| width <= 500.0)
}

async fn version_of(host: &Host) -> String {
    host.get("/hello/")
        .await
        .header("x-droplet-version")
        .expect("x-droplet-version")
        .to_string()
}

#[tokio::test]
async fn dashboard_in_a_real_browser() {
    let (driver, chrome) = match browser() {
        Ok(found) => found,
        Err(reason) => {
            assert!(
                std::env::var("DROPLET_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "DROPLET_REQUIRE_BROWSER=1 but {reason}"
            );
            println!("SKIPPED dashboard_in_a_real_browser: {reason}");
            return;
        }
    };
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .droplet("echo", "echo")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    // A second version of hello, so that there is something to roll back to.
    let first = version_of(&host).await;
    let deployed = admin_request(
        &host,
        "PUT",
        "/_admin/droplets/hello",
        Some(&json!({ "manifest": "budget_ms = 900" })),
    )
    .await;
    assert_eq!(deployed.status, 200, "{}", deployed.text());
    let second = version_of(&host).await;
    assert_ne!(first, second);

    // Traffic while the page watches.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (stop, client) = (Arc::clone(&stop), reqwest_like::Client::new(&host.url()));
        async move {
            while !stop.load(Ordering::Relaxed) {
                client.get("/hello/").await;
                client.get("/echo/").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let profile = tempfile::tempdir().expect("browser profile");
    let driver = start_driver(&driver).await;
    let client = open_browser(&driver, &chrome, profile.path()).await;
    let page = format!("{}/_admin/ui", host.url());
    client.goto(&page).await.expect("open the dashboard");

    // A bad token gets a clear message, and the login form again.
    let field = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("token"))
        .await
        .expect("the token field");
    field.send_keys("not-a-token").await.expect("type");
    client
        .find(Locator::Css("#login-form button"))
        .await
        .expect("open button")
        .click()
        .await
        .expect("click");
    until("the refusal", || async {
        text(&client, "#login-error")
            .await
            .contains("token was refused")
    })
    .await;

    // The right token, typed and submitted with the keyboard.
    let token = hs256_token(&claims_with_scope("droplets:admin"));
    let field = client
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    field
        .send_keys(&format!("{token}\u{E007}"))
        .await
        .expect("type the token and press Enter");
    until("hello with a non-zero request rate", || async {
        let rate = text(&client, "tr[data-name='hello'] td.rate").await;
        rate.parse::<f64>().is_ok_and(|rate| rate > 0.0)
    })
    .await;
    until("echo in the table", || async {
        !text(&client, "tr[data-name='echo']").await.is_empty()
    })
    .await;
    assert!(
        client
            .find(Locator::Css("tr[data-name='hello'] svg.spark"))
            .await
            .is_ok(),
        "hello's row has its chart"
    );
    // Sorting is a button in the header: keyboard-reachable.
    client
        .find(Locator::Css("th[data-sort='requests_per_s'] button"))
        .await
        .expect("sort button")
        .click()
        .await
        .expect("sort by rate");
    until("the sorted header", || async {
        client
            .find(Locator::Css("th[data-sort='requests_per_s']"))
            .await
            .ok()
            .is_some()
            && text(&client, "#droplets tbody tr:first-child th").await == "hello"
    })
    .await;
    assert!(fits(&client).await, "the page overflows at 1280 px");
    screenshot(&client, &shots, "overview-1280.png").await;
    client
        .set_window_size(390, 844)
        .await
        .expect("narrow window");
    until("the narrow window", || narrow(&client)).await;
    assert!(fits(&client).await, "the page overflows at 390 px");
    screenshot(&client, &shots, "overview-390.png").await;
    client
        .set_window_size(1280, 900)
        .await
        .expect("wide window");

    // The droplet's page: roll back with one click.
    client
        .find(Locator::Css("tr[data-name='hello'] th a"))
        .await
        .expect("hello's link")
        .click()
        .await
        .expect("open hello");
    until("the rollback button", || async {
        text(&client, "#rollback").await.contains(&first)
    })
    .await;
    until("hello's log lines", || async {
        client
            .find_all(Locator::Css("#log .line"))
            .await
            .is_ok_and(|lines| !lines.is_empty())
    })
    .await;
    client
        .find(Locator::Id("rollback"))
        .await
        .expect("rollback button")
        .click()
        .await
        .expect("click rollback");
    until("the rollback's result", || async {
        text(&client, "#rollback-result")
            .await
            .contains(&format!("Now serving {first}"))
    })
    .await;
    assert_eq!(
        version_of(&host).await,
        first,
        "the click rolled hello back"
    );

    // A canary beside the current version: both side by side, and the
    // abort button ends it.
    let canary = json!({
        "manifest": "budget_ms = 900\n[config]\ngreeting = \"Howdy\"\n",
        "canary": {"steps": [50], "min_requests": 1000000},
    });
    let started = admin_request(&host, "PUT", "/_admin/droplets/hello", Some(&canary)).await;
    assert_eq!(started.status, 202, "{}", started.text());
    let canary_version = started.json()["canary"].as_str().unwrap().to_string();
    until("both versions with traffic", || async {
        let table = text(&client, "#rollout-versions tbody").await;
        let canary_row = text(&client, "#rollout-versions tbody tr:first-child").await;
        table.contains(&canary_version)
            && table.contains(&first)
            && canary_row
                .split_whitespace()
                .nth(3)
                .is_some_and(|requests| requests != "0")
    })
    .await;
    assert!(text(&client, "#rollout-summary").await.contains("50 %"));
    client
        .find(Locator::Id("abort"))
        .await
        .expect("abort button")
        .click()
        .await
        .expect("click abort");
    until("the abort's result", || async {
        text(&client, "#rollout-result").await.contains("aborted")
    })
    .await;
    until("the canary marked in the versions", || async {
        text(&client, "#versions").await.contains("canary, aborted")
    })
    .await;
    assert_eq!(
        version_of(&host).await,
        first,
        "the stable version serves alone"
    );

    // A trace id in the tail filters the tail to that request.
    client
        .find(Locator::Css("#log .line button.trace"))
        .await
        .expect("a trace button")
        .click()
        .await
        .expect("filter by trace");
    until("the trace filter", || async {
        text(&client, "#log-filter").await.contains("trace")
    })
    .await;
    // A call recorded on request (an admin's `x-droplet-record: 1`) is
    // listed, and its trace shows its log lines.
    let recorded = host
        .send(
            http::Request::builder()
                .uri("/hello/recorded")
                .header("x-droplet-record", "1")
                .header("authorization", format!("Bearer {token}"))
                .body(bytes::Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(recorded.status, 200);
    let recorded_trace = recorded.header("x-trace-id").unwrap().to_string();
    until("the recorded call in the list", || async {
        let list = text(&client, "#recordings").await;
        list.contains(&recorded_trace[..12]) && list.contains("requested")
    })
    .await;
    client
        .find(Locator::Css("#recordings li:first-child button.trace"))
        .await
        .expect("the recording's trace button")
        .click()
        .await
        .expect("show its log lines");
    until("the recorded call's log lines", || async {
        text(&client, "#log-filter").await.contains(&recorded_trace)
    })
    .await;
    assert!(fits(&client).await, "the droplet page overflows at 1280 px");
    screenshot(&client, &shots, "droplet-1280.png").await;
    client
        .set_window_size(390, 844)
        .await
        .expect("narrow window");
    until("the narrow window", || narrow(&client)).await;
    assert!(fits(&client).await, "the droplet page overflows at 390 px");
    screenshot(&client, &shots, "droplet-390.png").await;

    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    let _ = client.close().await;
}
