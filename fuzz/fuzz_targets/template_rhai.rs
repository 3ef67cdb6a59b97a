//! Templates and Rhai under the engine's limits: the input, split at its first NUL,
//! is a notification template rendered against a deal-like context, and a Rhai
//! script run by the rule packs' engine. Neither may panic, hang or exhaust memory:
//! template fuel, Rhai's operation, depth and size limits must stop them.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, script) = text.split_once('\0').unwrap_or((text, text));
    let context = serde_json::json!({
        "deal": {"id": "40000000001", "dealname": "Acme data platform", "amount": "125000.50",
                 "closedate": "2026-12-31T00:00:00.000Z", "dealstage": "contractsent"},
        "opportunity": {"Id": "O5000001", "LifeCycle": {"Stage": "Committed", "ReviewStatus": "Approved"},
                        "Project": {"ExpectedCustomerSpend": [{"Amount": "10000", "CurrencyCode": "USD"}]}},
        "aws_summary": {"Insights": {"OpportunityQuality": {"Score": 64}}},
        "previous": {"score": 51},
        "now": "2026-11-28T12:00:00Z",
    });
    // Built once, as the service builds them once per rule set.
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    static ENGINE: std::sync::OnceLock<rhai::Engine> = std::sync::OnceLock::new();
    let env = ENV.get_or_init(pcsync_engine::template::environment);
    let _ = env.render_str(template, minijinja::Value::from(minijinja::value::Serde(&context)));
    let engine = ENGINE.get_or_init(pcsync_engine::script::engine);
    let _ = engine.run(script);
});
