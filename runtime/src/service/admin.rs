//! The operator's routes: health, readiness, metrics, the rules in force, and reload.
//!
//! - `GET /healthz`, `GET /readyz`: 200 while the store takes writes (a failed
//!   write in the last moments, or a failing probe write, answers 503 with the
//!   cause); the inbox counts and the rules version either way.
//! - `GET /metrics`: Prometheus (OpenMetrics) text.
//! - `GET /rules`: the rule set in force, the last reload error and the work the
//!   rules hold. Pack files are shown relative to the rule directory.
//! - `POST /admin/reload`: reload now.
//! - `POST /admin/solutions/refresh`: read the solution catalog now.
//!
//! `/rules` and the `/admin/` routes are the operator's: with `admin_token` set they need
//! `Authorization: Bearer <admin_token>`. Without one they answer only when the
//! config says to trust loopback peers (`admin_loopback: true`), and then only a
//! peer on the loopback interface that no proxy forwarded (a local reverse proxy
//! would otherwise lend its own address to anyone it serves), addressed by a
//! loopback name (`Host`: a page that rebinds its own DNS name to 127.0.0.1 sends
//! that name) and not sent by a web page of another origin (`Origin`: a cross-site
//! form POST comes from the user's own browser, on loopback).

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::service::metrics::Metrics;
use crate::service::reload::{Reloaded, RuleHost};
use crate::store::Store;

/// What the operator's routes need.
pub struct Admin {
    /// The store (counts, and whether it takes writes).
    pub store: Arc<dyn Store>,
    /// The rules in force.
    pub rules: Arc<RuleHost>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The token `/rules` and `/admin/reload` require, when set.
    pub admin_token: Option<String>,
    /// Without a token: whether direct loopback peers may use them.
    pub admin_loopback: bool,
    /// The time the service goes by.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Whether the service is ready for traffic (`/readyz`).
    pub readiness: Arc<Readiness>,
    /// The Solutions API's catalog, for `POST /admin/solutions/refresh`.
    pub solutions: Option<Arc<crate::service::solutions::Solutions>>,
}

/// What `/readyz` says besides the store's health: ready, or starting and why.
#[derive(Debug, Default)]
pub struct Readiness(std::sync::Mutex<Option<String>>);

impl Readiness {
    /// Starting: `/readyz` answers 503 with `reason` until [`Readiness::ready`].
    pub fn starting(reason: impl Into<String>) -> Self {
        Readiness(std::sync::Mutex::new(Some(reason.into())))
    }

    /// Ready from now on.
    pub fn ready(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Why the service is not ready yet, if it is not.
    pub fn waiting_for(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The operator's routes. The server must be served with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(admin: Arc<Admin>) -> Router {
    let operator = Router::new()
        .route("/rules", get(rules_status))
        .route("/admin/reload", post(admin_reload))
        .route("/admin/solutions/refresh", post(solutions_refresh))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&admin),
            operator_only,
        ));
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .merge(operator)
        .with_state(admin)
}

/// In front of the operator's routes: answers the refusal when [`Admin::refuse`]
/// gives one, else passes the request on.
async fn operator_only(
    State(a): State<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match a.refuse(peer, request.uri(), request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// Headers a proxy adds to say whom it forwards for.
const FORWARDING: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    "via",
];

impl Admin {
    /// `None` when the request may use an operator's route, else the refusal.
    fn refuse(
        &self,
        peer: std::net::SocketAddr,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> Option<Response> {
        use subtle::ConstantTimeEq;
        let (allowed, message) = match &self.admin_token {
            Some(token) => (
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes()))),
                "this route needs `Authorization: Bearer <admin_token>`",
            ),
            None if self.admin_loopback => {
                if !peer.ip().is_loopback() || FORWARDING.iter().any(|h| headers.contains_key(*h)) {
                    (
                        false,
                        "without admin_token this route answers only a loopback peer that no proxy forwarded",
                    )
                } else if !addressed_to_loopback(uri, headers) {
                    (
                        false,
                        "without admin_token this route answers only a request whose `Host` is localhost, 127.0.0.1 or [::1] (another name is how a web page reaches it by DNS rebinding)",
                    )
                } else if !from_loopback_origin(headers) {
                    (
                        false,
                        "without admin_token this route answers no web page of another origin (`Origin` must be http://localhost, 127.0.0.1 or [::1])",
                    )
                } else {
                    (true, "")
                }
            }
            None => (
                false,
                "this route needs admin_token in the config (or admin_loopback: true to trust loopback peers)",
            ),
        };
        (!allowed).then(|| {
            (
                StatusCode::FORBIDDEN,
                Json(json!({ "error": "forbidden", "message": message })),
            )
                .into_response()
        })
    }
}

/// Whether every name the request is addressed by (`Host`, and HTTP/2's
/// `:authority`) is a loopback one, and there is one.
fn addressed_to_loopback(uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    let mut names = headers
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().ok().and_then(|v| v.parse().ok()))
        .chain(uri.authority().cloned().map(Some))
        .peekable();
    names.peek().is_some()
        && names.all(|name: Option<axum::http::uri::Authority>| {
            name.is_some_and(|name| !name.as_str().contains('@') && is_loopback_host(name.host()))
        })
}

/// Whether the request came from no web page, or from one served on loopback.
fn from_loopback_origin(headers: &HeaderMap) -> bool {
    headers.get_all(header::ORIGIN).iter().all(|origin| {
        origin
            .to_str()
            .ok()
            .and_then(|o| o.parse::<axum::http::Uri>().ok())
            .is_some_and(|o| {
                matches!(o.scheme_str(), Some("http" | "https"))
                    && o.path_and_query().is_none_or(|p| p.as_str() == "/")
                    && o.authority()
                        .is_some_and(|a| !a.as_str().contains('@') && is_loopback_host(a.host()))
            })
    })
}

/// `localhost`, an address in 127.0.0.0/8, or `[::1]` (a host without its port).
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `GET /readyz`: 503 while starting (the sandbox's demo records its baselines
/// first), then as `/healthz`.
async fn ready(State(a): State<Arc<Admin>>) -> Response {
    match a.readiness.waiting_for() {
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "starting",
                "reason": reason,
                "rules_version": a.rules.current().version.clone(),
            })),
        )
            .into_response(),
        None => health(State(a)).await,
    }
}

/// `GET /healthz`.
async fn health(State(a): State<Arc<Admin>>) -> Response {
    let version = a.rules.current().version.clone();
    let now = a.clock.now_ms();
    let (writable, stats) = super::blocking(|| (a.store.check_writable(now), a.store.stats()));
    match (writable, stats) {
        (Ok(()), Ok(s)) => Json(json!({
            "status": "ok",
            "rules_version": version,
            "inbox": s,
            "partner_central_quota": quotas(&a, now),
            "hubspot_daily_limit": hubspot_daily_limit(&a, now),
            "aws_summaries": super::blocking(|| a.store.summary_ages(now)).ok(),
        }))
        .into_response(),
        (writable, stats) => {
            let error = match (&writable, &stats) {
                (Err(e), _) | (_, Err(e)) => e.to_string(),
                (Ok(()), Ok(_)) => String::new(),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "error",
                    "error": error,
                    "rules_version": version,
                    "inbox": stats.ok(),
                    "partner_central_quota": quotas(&a, now),
                })),
            )
                .into_response()
        }
    }
}

/// Where Partner Central's daily quotas stand, per class: calls in the last 24
/// hours, the allowance, what is left, and until when a spent class is held back.
fn quotas(a: &Admin, now_ms: i64) -> serde_json::Value {
    let Some(status) = a.metrics.quota_status(now_ms) else {
        return serde_json::Value::Null;
    };
    status
        .iter()
        .map(|s| {
            let paused = s.paused_until.and_then(|t| {
                jiff::Timestamp::from_millisecond(t)
                    .ok()
                    .map(|t| t.to_string())
            });
            (
                s.class.name().to_string(),
                json!({
                    "used_24h": s.used,
                    "limit": s.limit,
                    "remaining": s.remaining(),
                    "paused_until": paused,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// HubSpot's daily limit: the calls it refused for it (each event waits for the
/// reset, no attempt counted), and until when, while that is ahead.
fn hubspot_daily_limit(a: &Admin, now_ms: i64) -> serde_json::Value {
    let (waits, until) = a.metrics.hubspot_daily_limit(now_ms);
    let until = until.and_then(|t| {
        jiff::Timestamp::from_millisecond(t)
            .ok()
            .map(|t| t.to_string())
    });
    json!({ "waits": waits, "paused_until": until })
}

/// `GET /metrics`.
async fn metrics_text(State(a): State<Arc<Admin>>) -> Response {
    let now = a.clock.now_ms();
    let (stats, ages) = super::blocking(|| (a.store.stats(), a.store.summary_ages(now)));
    let text = a.metrics.render(stats.ok(), ages.ok());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /rules`.
async fn rules_status(State(a): State<Arc<Admin>>) -> Response {
    let mut out = a.rules.describe();
    let (stats, deferred) = super::blocking(|| (a.store.stats(), a.store.deferred(100)));
    if let Ok(s) = stats {
        out["inbox"] = json!(s);
    }
    if let Ok(deferred) = deferred {
        out["deferred"] = deferred
            .iter()
            .map(|d| {
                json!({
                    "key": d.key,
                    "events": d.events,
                    "reason": d.reason,
                    "recheck_at": jiff::Timestamp::from_millisecond(d.recheck_at)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect();
    }
    Json(out).into_response()
}

/// `POST /admin/solutions/refresh`: reads the solution catalog now (sharing a read
/// already under way); 502 with Partner Central's answer when it fails.
async fn solutions_refresh(State(a): State<Arc<Admin>>) -> Response {
    let Some(solutions) = &a.solutions else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "not found", "message": "the Solutions API is not running" })),
        )
            .into_response();
    };
    match solutions.refresh_shared(std::time::Duration::ZERO).await {
        Some(Ok(n)) => Json(json!({ "refreshed": true, "solutions": n })).into_response(),
        None => Json(json!({ "refreshed": true, "shared": "a read under way answered" }))
            .into_response(),
        Some(Err(error)) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "refreshed": false, "error": error })),
        )
            .into_response(),
    }
}

/// `POST /admin/reload`: 422 with the diagnostics when the packs do not check (the
/// rules in force stay).
async fn admin_reload(State(a): State<Arc<Admin>>) -> Response {
    match a.rules.reload() {
        Ok(Reloaded::Changed(v)) => Json(json!({ "reloaded": true, "version": v })).into_response(),
        Ok(Reloaded::Unchanged(v)) => {
            Json(json!({ "reloaded": false, "version": v })).into_response()
        }
        Err(diagnostics) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({ "reloaded": false, "version": a.rules.current().version,
                         "error": "the rule packs do not check", "diagnostics": diagnostics }),
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Inbox, SqliteStore};
    use serde_json::Value;
    use std::path::Path;

    struct Running {
        url: String,
        store: Arc<SqliteStore>,
        dir: tempfile::TempDir,
    }

    impl Running {
        /// A second connection to the state file, to make writes fail as a full or
        /// read-only disk would (a trigger aborts them).
        fn sql(&self, statement: &str) {
            rusqlite::Connection::open(self.dir.path().join("state.db"))
                .unwrap()
                .execute_batch(statement)
                .unwrap();
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    async fn start(admin_token: Option<&str>, admin_loopback: bool) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let packs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/language/packs");
        let rules = dir.path().join("rules");
        std::fs::create_dir_all(rules.join("scripts")).unwrap();
        for file in ["mapping.yaml", "scripts/title.rhai"] {
            std::fs::copy(packs.join(file), rules.join(file)).unwrap();
        }
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let metrics = Arc::new(Metrics::default());
        let host = RuleHost::load(&rules, Arc::clone(&metrics)).unwrap_or_else(|e| panic!("{e}"));
        let admin = Arc::new(Admin {
            store: store.clone(),
            rules: Arc::new(host),
            metrics,
            admin_token: admin_token.map(String::from),
            admin_loopback,
            clock: Arc::new(crate::clock::SystemClock),
            readiness: Default::default(),
            solutions: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router(admin).into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap()
        });
        Running { url, store, dir }
    }

    async fn get(r: &Running, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", r.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        (
            answer.status().as_u16(),
            answer.json().await.unwrap_or(Value::Null),
        )
    }

    fn change(deal: u64, id: u64) -> (pcsync_engine::Event, String) {
        let event = pcsync_engine::Event::from_value(
            &serde_json::json!({"hubspot": {"subscriptionType": "deal.propertyChange", "objectId": deal,
                "propertyName": "dealstage", "propertyValue": "x", "eventId": id, "occurredAt": 1}}),
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        (event, format!("deal:{deal}"))
    }

    #[tokio::test]
    async fn health_answers_503_while_the_store_refuses_writes() {
        let r = start(None, false).await;
        for path in ["/healthz", "/readyz"] {
            let (status, body) = get(&r, path, &[]).await;
            assert_eq!(
                (status, body["status"].as_str()),
                (200, Some("ok")),
                "{body}"
            );
        }

        // A file system that refuses every write: the probe write fails.
        r.sql(
            "CREATE TRIGGER read_only BEFORE UPDATE ON heartbeat BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END;
             CREATE TRIGGER read_only_insert BEFORE INSERT ON heartbeat BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END;",
        );
        for path in ["/healthz", "/readyz"] {
            let (status, body) = get(&r, path, &[]).await;
            assert_eq!(status, 503, "{path}: {body}");
            assert!(
                body["error"].as_str().unwrap().contains("readonly"),
                "{body}"
            );
        }
        r.sql("DROP TRIGGER read_only; DROP TRIGGER read_only_insert;");
        assert_eq!(get(&r, "/healthz", &[]).await.0, 200);

        // A full disk that still takes the probe's one row but not a batch: the
        // failed accept marks the store unwritable until a write succeeds.
        r.sql("CREATE TRIGGER full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;");
        assert!(r.store.accept(&[change(1, 1)], now()).is_err());
        let (status, body) = get(&r, "/readyz", &[]).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("disk is full"),
            "{body}"
        );
        r.sql("DROP TRIGGER full;");
        r.store.accept(&[change(1, 1)], now()).unwrap();
        let (status, body) = get(&r, "/readyz", &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["inbox"]["pending"], 1, "{body}");
    }

    #[tokio::test]
    async fn operator_routes_need_the_token_or_a_direct_loopback_peer() {
        // No token, loopback not trusted: refused, saying how to allow it.
        let closed = start(None, false).await;
        let (status, body) = get(&closed, "/rules", &[]).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().unwrap().contains("admin_token"));
        let reload = reqwest::Client::new()
            .post(format!("{}/admin/reload", closed.url))
            .send()
            .await
            .unwrap();
        assert_eq!(reload.status(), 403);

        // Loopback trusted: a direct peer is let in, one a proxy forwarded is not.
        let open = start(None, true).await;
        let (status, body) = get(&open, "/rules", &[]).await;
        assert_eq!(status, 200, "{body}");
        for forwarded in [
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("via", "1.1 nginx"),
        ] {
            assert_eq!(
                get(&open, "/rules", &[forwarded]).await.0,
                403,
                "{forwarded:?}"
            );
        }

        // A token: needed even on loopback, and enough behind a proxy.
        let token = start(Some("operator-token-0123456789"), true).await;
        assert_eq!(get(&token, "/rules", &[]).await.0, 403);
        let (status, body) = get(
            &token,
            "/rules",
            &[
                ("authorization", "Bearer operator-token-0123456789"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // The machine's layout stays private: pack files relative to the rules.
        assert_eq!(body["packs"][0]["file"], "mapping.yaml", "{body}");
        assert!(
            !body
                .to_string()
                .contains(&*token.dir.path().to_string_lossy()),
            "{body}"
        );
        // Health and metrics stay open (probes and scrapers carry no token).
        assert_eq!(get(&token, "/healthz", &[]).await.0, 200);
    }

    async fn reload(r: &Running, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(format!("{}/admin/reload", r.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        (
            answer.status().as_u16(),
            answer.json().await.unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn loopback_trust_refuses_web_pages_of_other_sites() {
        let open = start(None, true).await;
        let port = open.url.rsplit(':').next().unwrap().to_string();
        // DNS rebinding: a page's own name, resolved to 127.0.0.1, arrives as `Host`.
        for host in [
            "evil.example",
            &format!("evil.example:{port}"),
            "127.0.0.1.evil.example",
        ] {
            let (status, body) = get(&open, "/rules", &[("host", host)]).await;
            assert_eq!(status, 403, "{host}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains("`Host`"),
                "{body}"
            );
        }
        // Loopback names, with or without the port, are this machine.
        for host in [
            format!("localhost:{port}"),
            "localhost".to_string(),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ] {
            let (status, body) = get(&open, "/rules", &[("host", &host)]).await;
            assert_eq!(status, 200, "{host}: {body}");
        }

        // A cross-site form POST: the user's browser, on loopback, says whose page.
        for origin in [
            "https://evil.example",
            "null",
            "http://localhost.evil.example",
        ] {
            let (status, body) = reload(&open, &[("origin", origin)]).await;
            assert_eq!(status, 403, "{origin}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains("`Origin`"),
                "{body}"
            );
        }
        // A page served on loopback, and curl (no `Origin`), may reload.
        for headers in [&[("origin", "http://localhost:3000")][..], &[]] {
            let (status, body) = reload(&open, headers).await;
            assert_eq!(status, 200, "{headers:?}: {body}");
        }

        // The token is enough whatever the request says it is addressed by or from.
        let token = start(Some("operator-token-0123456789"), true).await;
        let (status, body) = reload(
            &token,
            &[
                ("authorization", "Bearer operator-token-0123456789"),
                ("host", "sync.example.com"),
                ("origin", "https://app.hubspot.com"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}
