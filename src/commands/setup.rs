//! `pcsync setup hubspot --config FILE`: creates the custom deal properties the rule
//! packs use, idempotently, and reports what existed and what it created.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use pcsync_adapters::hubspot::client::{HubSpotClient, PropertySpec};
use pcsync_engine::MissingEnv;

/// Custom properties with a known definition: name, label, type, field type, description.
const KNOWN: &[(&str, &str, &str, &str, &str)] = &[
    (
        "aws_opportunity_id",
        "AWS opportunity ID",
        "string",
        "text",
        "The Partner Central opportunity this deal is linked to (O…).",
    ),
    (
        "aws_sync_status",
        "AWS sync status",
        "string",
        "text",
        "The outcome of pcsync's last sync to Partner Central.",
    ),
    (
        "aws_last_sync_date",
        "AWS last sync",
        "datetime",
        "date",
        "When pcsync last synced this deal to Partner Central.",
    ),
    (
        "aws_synced_resources",
        "AWS synced resources",
        "string",
        "textarea",
        "Partner Central snapshot revisions already noted on this deal.",
    ),
    (
        "aws_last_resource_sync",
        "AWS last resource sync",
        "datetime",
        "date",
        "When pcsync last looked for new Partner Central snapshots.",
    ),
    (
        "aws_customer_account_id",
        "Customer AWS account ID",
        "string",
        "text",
        "The customer's 12-digit AWS account id, sent to Partner Central (a consulting partner's opportunity needs it at Launched).",
    ),
];

/// HubSpot's own deal properties, never created.
fn hubspot_defined(name: &str) -> bool {
    const DEFAULTS: &[&str] = &[
        "dealname",
        "dealstage",
        "closedate",
        "amount",
        "description",
        "deal_currency_code",
        "hubspot_owner_id",
        "pipeline",
        "dealtype",
        "createdate",
        "closed_lost_reason",
        "closed_won_reason",
        "num_associated_contacts",
    ];
    DEFAULTS.contains(&name) || name.starts_with("hs_")
}

/// What the packs' triggers ask of the outside world: HubSpot webhook subscriptions
/// (`deal.propertyChange` per property, as HubSpot subscribes them) and the
/// EventBridge detail-types the rule must route. An unfiltered property change is `*`.
fn subscriptions(rules: &pcsync_engine::RuleSet) -> (BTreeSet<String>, BTreeSet<&'static str>) {
    let (mut hubspot, mut eventbridge) = (BTreeSet::new(), BTreeSet::new());
    for compiled in rules.packs.iter().filter(|c| c.pack.enabled) {
        for trigger in compiled.pack.on.as_slice() {
            if let Some(event) = trigger.hubspot {
                let kind = event.as_str();
                if kind.ends_with(".propertyChange") {
                    if trigger.properties.is_empty() {
                        hubspot.insert(format!("{kind} *"));
                    }
                    hubspot.extend(trigger.properties.iter().map(|p| format!("{kind} {p}")));
                } else {
                    hubspot.insert(kind.to_string());
                }
            }
            if let Some(event) = trigger.partnercentral {
                eventbridge.insert(event.as_str());
            }
        }
    }
    (hubspot, eventbridge)
}

/// Every deal property a pack reads or writes that HubSpot does not define itself,
/// as `setup hubspot` creates it.
pub(super) fn custom_properties(rules: &pcsync_engine::RuleSet) -> Vec<PropertySpec> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for compiled in &rules.packs {
        let p = &compiled.pack;
        wanted.extend(p.needs.deal.iter().cloned());
        wanted.insert(p.needs.link_property.clone());
        wanted.extend(p.on_success.set_deal.keys().cloned());
        wanted.extend(p.on_error.set_deal.keys().cloned());
        wanted.extend(
            p.map
                .iter()
                .filter(|(_, m)| m.from.is_some())
                .map(|(k, _)| k.clone()),
        );
        wanted.extend(p.notify.iter().filter_map(|n| n.remember_in.clone()));
    }
    wanted.retain(|name| !hubspot_defined(name));
    wanted
        .iter()
        .map(|name| match KNOWN.iter().find(|k| k.0 == name) {
            Some((name, label, kind, field, description)) => PropertySpec {
                name: name.to_string(),
                label: label.to_string(),
                kind: kind.to_string(),
                field_type: field.to_string(),
                description: description.to_string(),
            },
            None => PropertySpec {
                name: name.clone(),
                label: name.replace('_', " "),
                kind: "string".into(),
                field_type: "text".into(),
                description: "Used by pcsync rule packs.".into(),
            },
        })
        .collect()
}

pub fn run(config_path: &Path) -> ExitCode {
    let checked = super::checked_config(config_path, MissingEnv::Error).and_then(|config| {
        pcsync_runtime::service::reload::load_dir(&config.rules_dir(config_path))
            .map(|r| (config, r))
    });
    let (config, rules) = match checked {
        Ok(both) => both,
        Err(shown) => {
            eprint!("{shown}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let specs = custom_properties(&rules);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pcsync setup: cannot start the runtime: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let hubspot = &config.hubspot;
    let client = HubSpotClient::new(
        &hubspot.base_url,
        &hubspot.token,
        hubspot.rate_limit_per_10s,
    );
    runtime.block_on(async {
        let existing = match client.deal_property_names().await {
            Ok(names) => names,
            Err(e) => {
                eprintln!("pcsync setup: cannot list HubSpot's deal properties: {e}");
                return ExitCode::from(1);
            }
        };
        let (mut created, mut kept) = (0, 0);
        let progress = crate::progress::Progress::bar(specs.len() as u64, "deal properties", true);
        for (i, spec) in specs.iter().enumerate() {
            progress.set(i as u64);
            if existing.contains(&spec.name) {
                progress.println(&format!("exists   {}", spec.name));
                kept += 1;
                continue;
            }
            match client.create_deal_property(spec).await {
                Ok(true) => {
                    progress.println(&format!(
                        "created  {} ({}, {})",
                        spec.name, spec.kind, spec.field_type
                    ));
                    created += 1;
                }
                Ok(false) => {
                    progress.println(&format!("exists   {}", spec.name));
                    kept += 1;
                }
                Err(e) => {
                    progress.done();
                    eprintln!("pcsync setup: cannot create `{}`: {e}", spec.name);
                    return ExitCode::from(1);
                }
            }
        }
        progress.done();
        println!("{created} created, {kept} already there");
        // Subscriptions belong to the HubSpot app and the AWS account, which this
        // command's credentials cannot change: say what they must be.
        let (hooks, events) = subscriptions(&rules);
        println!("\nthe HubSpot app's webhook subscriptions the packs need (target: {}/webhooks/hubspot):", config.public_url);
        for hook in &hooks {
            println!("  {hook}");
        }
        println!("the EventBridge rule's detail-types (source aws.partnercentral-selling, target: {}/events/partnercentral):", config.public_url);
        for event in &events {
            println!("  {event}");
        }
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_packs_need_these_subscriptions() {
        let rules = pcsync_runtime::service::reload::load_dir(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/rules"
        )))
        .unwrap();
        let (hooks, events) = subscriptions(&rules);
        assert!(hooks.contains("deal.creation"), "{hooks:?}");
        assert!(hooks.contains("deal.propertyChange dealstage"), "{hooks:?}");
        assert!(
            hooks.contains("deal.propertyChange closed_lost_reason"),
            "{hooks:?}"
        );
        assert!(hooks.contains("company.propertyChange zip"), "{hooks:?}");
        assert!(!hooks.iter().any(|h| h.ends_with('*')), "{hooks:?}");
        assert_eq!(
            events.into_iter().collect::<Vec<_>>(),
            [
                "Engagement Resource Snapshot Created",
                "Opportunity Updated"
            ]
        );
    }
}
