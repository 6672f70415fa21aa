//! The dashboard's data: one page of the droplet table with live rates,
//! latency, errors and kv usage (`GET /_admin/overview`), a droplet's
//! per-second series (`…/series`) and its log tail (`…/logs`).
//!
//! Everything is computed from what the host keeps anyway (the per-droplet
//! stats and their per-second ring, [`crate::ops::log_tail`]); kv usage is read
//! for the rows of the page asked for only, and cached for a few seconds,
//! so a dashboard left open costs the store little.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::reply::{convergence, fleet_view, named, typed, whole_number};
use super::schema::{DropletRow, HostOverview, KvUsage, Overview, Series};
use crate::app::App;
use crate::droplets::Droplet;
use crate::droplets::series::{Point, SERIES_SECONDS};
use crate::error::HostError;

/// Rows one overview page may hold.
const MAX_PAGE: usize = 200;

/// What the overview was asked for.
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OverviewQuery {
    /// Only droplets whose name contains this (case-insensitive).
    filter: Option<String>,
    /// `name` (default), `state`, `requests_per_s`, `p50_ms`, `p99_ms`,
    /// `error_pct`, `requests`, `budget_overruns`, `traps` or `in_flight`.
    sort: Option<String>,
    /// `asc` or `desc` (default: `asc` for `name` and `state`, else `desc`).
    order: Option<String>,
    /// Rows to skip.
    offset: Option<usize>,
    /// Rows to return (default 50, at most 200).
    limit: Option<usize>,
    /// Points of the requests/s and p99 series per row over the last
    /// 5 minutes (a divisor of 300, at most 300); 0 or absent: none.
    points: Option<usize>,
}

fn parse_query(query: &str) -> Result<OverviewQuery, HostError> {
    let mut parsed = OverviewQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "filter" => parsed.filter = Some(value.to_lowercase()),
            "sort" => parsed.sort = Some(value.into_owned()),
            "order" => parsed.order = Some(value.into_owned()),
            "offset" => parsed.offset = Some(whole_number(&key, &value)?),
            "limit" => parsed.limit = Some(whole_number(&key, &value)?),
            "points" => parsed.points = Some(whole_number(&key, &value)?),
            _ => {}
        }
    }
    Ok(parsed)
}

/// Requests/s over the last 10 s and the share of 5xx over the last
/// minute, from the last 60 finished seconds.
fn rates(points: &[Point]) -> (f64, f64) {
    let last10 = &points[points.len().saturating_sub(10)..];
    let rate = last10.iter().map(|p| f64::from(p.requests)).sum::<f64>() / 10.0;
    let (requests, errors) = points.iter().fold((0u64, 0u64), |(r, e), p| {
        (r + u64::from(p.requests), e + u64::from(p.errors))
    });
    let error_pct = if requests == 0 {
        0.0
    } else {
        (errors as f64 * 100.0 / requests as f64).min(100.0)
    };
    (round(rate, 1), round(error_pct, 2))
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `points` of the last five minutes, each `300 / points` seconds.
fn downsample(points: &[Point], count: usize) -> Series {
    let step = (SERIES_SECONDS / count.max(1)).max(1);
    let chunks = points.chunks(step);
    let mut series = Series {
        step_s: step as u32,
        end_unix_s: unix_now(),
        requests_per_s: Vec::with_capacity(count),
        errors_per_s: Vec::with_capacity(count),
        p99_ms: Vec::with_capacity(count),
    };
    for chunk in chunks {
        let seconds = chunk.len() as f64;
        let requests: u64 = chunk.iter().map(|p| u64::from(p.requests)).sum();
        let errors: u64 = chunk.iter().map(|p| u64::from(p.errors)).sum();
        let p99 = chunk.iter().map(|p| p.p99_us).max().unwrap_or(0);
        series
            .requests_per_s
            .push(round(requests as f64 / seconds, 2));
        series.errors_per_s.push(round(errors as f64 / seconds, 2));
        series.p99_ms.push(round(f64::from(p99) / 1e3, 3));
    }
    series
}

fn row(droplet: &Droplet) -> DropletRow {
    let (state, error) = droplet.health();
    let (requests_per_s, error_pct) = rates(&droplet.stats.series(60));
    let latency = droplet.stats.latency();
    let stats = droplet.stats.snapshot();
    DropletRow {
        name: droplet.name.to_string(),
        version: droplet.version.as_str().to_string(),
        state,
        error,
        fleet: None,
        requests_per_s,
        p50_ms: latency.p50_ms,
        p99_ms: latency.p99_ms,
        error_pct,
        requests: stats.requests.iter().sum(),
        budget_overruns: stats.budget_overruns,
        traps: stats.traps,
        in_flight: stats.in_flight,
        kv: None,
        series: None,
    }
}

fn sort_rows(rows: &mut [DropletRow], sort: &str, order: Option<&str>) -> Result<(), HostError> {
    let number = |row: &DropletRow| -> f64 {
        match sort {
            "requests_per_s" => row.requests_per_s,
            "p50_ms" => row.p50_ms,
            "p99_ms" => row.p99_ms,
            "error_pct" => row.error_pct,
            "requests" => row.requests as f64,
            "budget_overruns" => row.budget_overruns as f64,
            "traps" => row.traps as f64,
            "in_flight" => row.in_flight as f64,
            _ => 0.0,
        }
    };
    let textual = matches!(sort, "name" | "state");
    if !textual
        && !matches!(
            sort,
            "requests_per_s"
                | "p50_ms"
                | "p99_ms"
                | "error_pct"
                | "requests"
                | "budget_overruns"
                | "traps"
                | "in_flight"
        )
    {
        return Err(HostError::BadRequest(format!(
            "cannot sort by `{sort}`: use name, state, requests_per_s, p50_ms, p99_ms, error_pct, requests, budget_overruns, traps or in_flight"
        )));
    }
    let descending = match order {
        None => !textual,
        Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(HostError::BadRequest(format!(
                "`order` is asc or desc, not `{other}`"
            )));
        }
    };
    rows.sort_by(|a, b| {
        let ordering = match sort {
            "name" => a.name.cmp(&b.name),
            "state" => a.state.cmp(b.state).then_with(|| a.name.cmp(&b.name)),
            _ => number(a)
                .total_cmp(&number(b))
                .then_with(|| b.name.cmp(&a.name)),
        };
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    Ok(())
}

/// One page of the droplet table, sorted and filtered, with live figures.
#[utoipa::path(
    get,
    path = "/_admin/overview",
    tag = "dashboard",
    params(OverviewQuery),
    responses(
        (status = 200, description = "The host and one page of droplets", body = Overview),
        (status = 400, description = "A bad sort, order or number", body = super::schema::ErrorBody),
        (status = 401, description = "No valid token", body = super::schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = super::schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn overview(app: &App, query: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let query = parse_query(query)?;
    let droplets = app.droplets.list();
    let mut rows: Vec<DropletRow> = droplets.iter().map(|droplet| row(droplet)).collect();
    let host = HostOverview {
        droplets: rows.len(),
        uptime_s: app.started.elapsed().as_secs(),
        requests_per_s: round(rows.iter().map(|row| row.requests_per_s).sum(), 1),
        in_flight: rows.iter().map(|row| row.in_flight).sum(),
        fleet_hosts: None,
    };
    if let Some(filter) = &query.filter {
        rows.retain(|row| row.name.to_lowercase().contains(filter.as_str()));
    }
    sort_rows(
        &mut rows,
        query.sort.as_deref().unwrap_or("name"),
        query.order.as_deref(),
    )?;
    let total = rows.len();
    let offset = query.offset.unwrap_or(0).min(total);
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let mut page: Vec<DropletRow> = rows.into_iter().skip(offset).take(limit).collect();

    let points = query.points.unwrap_or(0).min(SERIES_SECONDS);
    let view = fleet_view(app).await;
    for row in &mut page {
        if points > 0
            && let Some(droplet) = app.droplets.get(&row.name)
        {
            row.series = Some(downsample(&droplet.stats.series(SERIES_SECONDS), points));
        }
        if let Some(view) = &view {
            row.fleet = Some(convergence(view, &row.name, false).summary);
        }
        row.kv = kv_usage(app, &row.name).await;
    }
    let fleet_hosts = match &view {
        Some(Ok(view)) => Some(view.hosts),
        _ => None,
    };
    Ok(typed(
        StatusCode::OK,
        &Overview {
            host: HostOverview {
                fleet_hosts,
                ..host
            },
            total,
            offset,
            droplets: page,
        },
    ))
}

/// `name`'s kv usage, from the cache when it is fresh; `None` when the
/// store cannot say (the row shows a dash, the page keeps working).
async fn kv_usage(app: &App, name: &str) -> Option<KvUsage> {
    let usage = match app.kv_usage.fresh(name) {
        Some(usage) => usage,
        None => {
            let usage = tokio::time::timeout(Duration::from_secs(1), app.kv().usage(name))
                .await
                .ok()?
                .ok()?;
            app.kv_usage.keep(name, usage);
            usage
        }
    };
    Some(KvUsage {
        keys: usage.keys,
        bytes: usage.bytes,
    })
}

/// A droplet's traffic of the last 5 minutes, second by second.
#[utoipa::path(
    get,
    path = "/_admin/droplets/{name}/series",
    tag = "dashboard",
    params(("name" = String, Path, description = "The droplet's name")),
    responses(
        (status = 200, description = "300 one-second points, oldest first", body = Series),
        (status = 401, description = "No valid token", body = super::schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = super::schema::ErrorBody),
        (status = 404, description = "No droplet by that name", body = super::schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) fn series(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let droplet = named(app, name)?;
    let points = droplet.stats.series(SERIES_SECONDS);
    Ok(typed(StatusCode::OK, &downsample(&points, SERIES_SECONDS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_downsampling() {
        let mut points = vec![Point::default(); 60];
        for point in points.iter_mut().skip(50) {
            point.requests = 20;
            point.errors = 1;
            point.p99_us = 1500;
        }
        let (rate, error_pct) = rates(&points);
        assert_eq!(rate, 20.0);
        assert_eq!(error_pct, 5.0);
        let mut five_minutes = vec![Point::default(); SERIES_SECONDS];
        five_minutes[299].requests = 50;
        five_minutes[299].p99_us = 2000;
        let series = downsample(&five_minutes, 60);
        assert_eq!(series.step_s, 5);
        assert_eq!(series.requests_per_s.len(), 60);
        assert_eq!(series.requests_per_s[59], 10.0);
        assert_eq!(series.p99_ms[59], 2.0);
        assert_eq!(series.requests_per_s[0], 0.0);
    }

    #[test]
    fn queries_are_checked() {
        assert!(parse_query("limit=abc").is_err());
        let query = parse_query("filter=Ab&sort=p99_ms&limit=5").map_err(|e| e.to_string());
        assert!(matches!(query, Ok(OverviewQuery { limit: Some(5), .. })));
        let mut rows: Vec<DropletRow> = Vec::new();
        assert!(sort_rows(&mut rows, "nonsense", None).is_err());
        assert!(sort_rows(&mut rows, "name", Some("sideways")).is_err());
    }
}
