//! `GET /metrics`: Prometheus text format (prometheus-client). Counters are recorded
//! where things happen; the inbox gauges are read from the store at scrape time, so
//! they are right across restarts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Timings = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds, from 1 ms to about 16 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The service's counters.
pub struct Metrics {
    registry: Registry,
    accepted: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    plans: Family<Labels, Counter>,
    effects: Family<Labels, Counter>,
    batches: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    echoes: Counter,
    solution_refreshes: Family<Labels, Counter>,
    solutions: Gauge,
    remote_calls: Family<Labels, Counter>,
    remote_attempts: Family<Labels, Counter>,
    remote_seconds: Timings,
    limiter_waits: Timings,
    connections_open: Gauge,
    connections_refused: Counter,
    quotas: std::sync::OnceLock<std::sync::Arc<pcsync_adapters::quota::DailyQuotas>>,
    hubspot_daily_waits: Counter,
    /// When HubSpot's daily limit last met resets (ms since the epoch; 0 never met).
    hubspot_daily_resets_at: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl pcsync_adapters::Observer for Metrics {
    fn called(&self, api: &'static str, operation: &str, outcome: &str, took: std::time::Duration) {
        self.remote_calls
            .get_or_create(&vec![
                ("api", api.to_string()),
                ("operation", operation.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        self.remote_seconds
            .get_or_create(&vec![
                ("api", api.to_string()),
                ("operation", operation.to_string()),
            ])
            .observe(took.as_secs_f64());
    }

    fn attempted(&self, api: &'static str, operation: &str, outcome: &str) {
        self.remote_attempts
            .get_or_create(&vec![
                ("api", api.to_string()),
                ("operation", operation.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    fn daily_limit(&self, api: &'static str, resets_at: jiff::Timestamp) {
        if api == "hubspot" {
            self.hubspot_daily_waits.inc();
            self.hubspot_daily_resets_at.store(
                resets_at.as_millisecond(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    fn waited(&self, api: &'static str, waited: std::time::Duration) {
        self.limiter_waits
            .get_or_create(&vec![("api", api.to_string())])
            .observe(waited.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pcsync");
        let m = Metrics {
            registry: Registry::default(),
            accepted: Family::default(),
            rejected: Family::default(),
            plans: Family::default(),
            effects: Family::default(),
            batches: Family::default(),
            reloads: Family::default(),
            echoes: Counter::default(),
            solution_refreshes: Family::default(),
            solutions: Gauge::default(),
            remote_calls: Family::default(),
            remote_attempts: Family::default(),
            remote_seconds: Family::new_with_constructor(seconds),
            limiter_waits: Family::new_with_constructor(seconds),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            quotas: std::sync::OnceLock::new(),
            hubspot_daily_waits: Counter::default(),
            hubspot_daily_resets_at: std::sync::atomic::AtomicI64::new(0),
        };
        registry.register(
            "hubspot_daily_limit_waits",
            "Calls HubSpot refused for its daily limit (429 DAILY): their events wait for the reset",
            m.hubspot_daily_waits.clone(),
        );
        registry.register(
            "events_accepted",
            "Events committed to the inbox, by source",
            m.accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Requests or events refused or parked at ingest, by reason",
            m.rejected.clone(),
        );
        registry.register("plans", "Packs planned, by pack", m.plans.clone());
        registry.register(
            "effects",
            "Effects performed, by kind and outcome",
            m.effects.clone(),
        );
        registry.register(
            "batches",
            "Inbox batches settled, by outcome (done, retry, deferred, dead)",
            m.batches.clone(),
        );
        registry.register(
            "reloads",
            "Rule reloads, by result (changed, unchanged, error)",
            m.reloads.clone(),
        );
        registry.register(
            "echoes_dropped",
            "Events dropped as pcsync's own writes coming back",
            m.echoes.clone(),
        );
        registry.register(
            "solution_catalog_refreshes",
            "Reads of the Partner Central solution catalog, by result (ok, error)",
            m.solution_refreshes.clone(),
        );
        registry.register(
            "solution_catalog_size",
            "Solutions in the cached catalog the Solutions API answers from",
            m.solutions.clone(),
        );
        registry.register(
            "remote_calls",
            "Calls to HubSpot, Partner Central and SNS, by API, operation and outcome (ok, an error code or HTTP status)",
            m.remote_calls.clone(),
        );
        registry.register(
            "remote_attempts",
            "HTTP exchanges with Partner Central and SNS, the AWS SDK's own retries included, by API, operation and outcome (ok, HTTP status, timeout, transport)",
            m.remote_attempts.clone(),
        );
        registry.register(
            "remote_call_seconds",
            "Time of calls to HubSpot, Partner Central and SNS (SDK retries included), by API and operation",
            m.remote_seconds.clone(),
        );
        registry.register(
            "rate_limiter_wait_seconds",
            "Time calls waited for pcsync's own rate limiter before going out, by API",
            m.limiter_waits.clone(),
        );
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections answered 503 and closed because http.max_connections were open",
            m.connections_refused.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// An HTTP connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// An HTTP connection has closed.
    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// An HTTP connection was refused: `http.max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Events committed, from `source`.
    pub fn accepted(&self, source: &str, n: usize) {
        self.accepted
            .get_or_create(&vec![("source", source.to_string())])
            .inc_by(n as u64);
    }

    /// A request or event refused or parked at ingest.
    pub fn rejected(&self, reason: &str, n: usize) {
        self.rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc_by(n as u64);
    }

    /// A pack planned.
    pub fn planned(&self, pack: &str) {
        self.plans
            .get_or_create(&vec![("pack", pack.to_string())])
            .inc();
    }

    /// An effect performed.
    pub fn effect(&self, kind: &str, outcome: &str) {
        self.effects
            .get_or_create(&vec![
                ("kind", kind.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// A batch settled.
    pub fn batch(&self, outcome: &str) {
        self.batches
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// A reload ran.
    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// An echo was dropped.
    pub fn echo(&self) {
        self.echoes.inc();
    }

    /// The solution catalog was read (`Some(size)`) or failed to be (`None`).
    pub fn solution_refresh(&self, size: Option<usize>) {
        let result = if size.is_some() { "ok" } else { "error" };
        self.solution_refreshes
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        if let Some(n) = size {
            self.solutions.set(n as i64);
        }
    }

    /// Reports where Partner Central's daily quotas stand, from `quotas`.
    pub fn watch_quotas(&self, quotas: std::sync::Arc<pcsync_adapters::quota::DailyQuotas>) {
        let _ = self.quotas.set(quotas);
    }

    /// Where Partner Central's daily quotas stand, when watched.
    pub fn quota_status(&self, now_ms: i64) -> Option<Vec<pcsync_adapters::quota::QuotaStatus>> {
        self.quotas.get().map(|q| q.status(now_ms))
    }

    /// HubSpot's daily limit as met so far: how many calls it refused, and when it
    /// resets while that is still ahead of `now_ms`.
    pub fn hubspot_daily_limit(&self, now_ms: i64) -> (u64, Option<i64>) {
        let at = self
            .hubspot_daily_resets_at
            .load(std::sync::atomic::Ordering::Relaxed);
        (self.hubspot_daily_waits.get(), (at > now_ms).then_some(at))
    }

    /// The text exposition, with the inbox and quota gauges appended.
    pub fn render(
        &self,
        inbox: Option<crate::store::InboxStats>,
        summaries: Option<crate::store::SummaryAges>,
    ) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        // The registry ends with `# EOF`; the gauges go before it.
        let body = out.trim_end().trim_end_matches("# EOF").to_string();
        let mut out = body;
        if let Some(s) = inbox {
            out.push_str(
                "# HELP pcsync_inbox_events Events in the inbox, by state.\n\
                 # TYPE pcsync_inbox_events gauge\n",
            );
            for (state, n) in [
                ("pending", s.pending),
                ("running", s.running),
                ("deferred", s.deferred),
                ("done", s.done),
                ("dead", s.dead),
            ] {
                out.push_str(&format!("pcsync_inbox_events{{state=\"{state}\"}} {n}\n"));
            }
        }
        if let Some(a) = summaries {
            out.push_str(
                "# HELP pcsync_aws_summary_age_seconds How long ago the AWS summaries of open, submitted opportunities were read (quantile 1 is the oldest).\n\
                 # TYPE pcsync_aws_summary_age_seconds gauge\n",
            );
            for (q, v) in [("0.5", a.p50_s), ("0.95", a.p95_s), ("1", a.oldest_s)] {
                if let Some(v) = v {
                    out.push_str(&format!(
                        "pcsync_aws_summary_age_seconds{{quantile=\"{q}\"}} {v}\n"
                    ));
                }
            }
            out.push_str(&format!(
                "# HELP pcsync_aws_summary_unread Open, submitted opportunities whose AWS summary pcsync has not read.\n\
                 # TYPE pcsync_aws_summary_unread gauge\npcsync_aws_summary_unread {}\n",
                a.never_read
            ));
        }
        if let Some(status) = self.quota_status(jiff::Timestamp::now().as_millisecond()) {
            for (name, help, value) in [
                (
                    "partnercentral_quota_used",
                    "Partner Central calls pcsync sent in the last 24 hours, by daily quota class.",
                    (|s: &pcsync_adapters::quota::QuotaStatus| s.used) as fn(&_) -> u64,
                ),
                (
                    "partnercentral_quota_limit",
                    "The daily allowance per class (partner_central.daily_quota).",
                    |s| s.limit,
                ),
                (
                    "partnercentral_quota_remaining",
                    "What is left of the daily allowance per class.",
                    |s| s.remaining(),
                ),
                (
                    "partnercentral_quota_paused",
                    "1 while calls in the class are held back because it is spent.",
                    |s| u64::from(s.paused_until.is_some()),
                ),
            ] {
                out.push_str(&format!(
                    "# HELP pcsync_{name} {help}\n# TYPE pcsync_{name} gauge\n"
                ));
                for s in &status {
                    out.push_str(&format!(
                        "pcsync_{name}{{class=\"{}\"}} {}\n",
                        s.class.name(),
                        value(s)
                    ));
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_inbox_gauges_render_as_openmetrics_text() {
        let m = Metrics::default();
        m.accepted("hubspot", 3);
        m.effect("UpdateOpportunity", "ok");
        m.effect("UpdateOpportunity", "ok");
        m.batch("dead");
        let text = m.render(
            Some(crate::store::InboxStats {
                pending: 2,
                dead: 1,
                ..Default::default()
            }),
            Some(crate::store::SummaryAges {
                opportunities: 3,
                never_read: 1,
                p50_s: Some(60),
                p95_s: Some(600),
                oldest_s: Some(700),
            }),
        );
        assert!(
            text.contains("pcsync_aws_summary_age_seconds{quantile=\"0.95\"} 600"),
            "{text}"
        );
        assert!(text.contains("pcsync_aws_summary_unread 1"), "{text}");
        assert!(
            text.contains("pcsync_events_accepted_total{source=\"hubspot\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("pcsync_effects_total{kind=\"UpdateOpportunity\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("pcsync_batches_total{outcome=\"dead\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pcsync_inbox_events{state=\"pending\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
