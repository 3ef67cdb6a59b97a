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

pub fn run(config_path: &Path) -> ExitCode {
    let checked = super::checked_config(config_path, MissingEnv::Error).and_then(|config| {
        crate::service::reload::load_dir(&config.rules_dir(config_path)).map(|r| (config, r))
    });
    let (config, rules) = match checked {
        Ok(both) => both,
        Err(shown) => {
            eprint!("{shown}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    // Every deal property a pack reads or writes that HubSpot does not define itself.
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
    let specs: Vec<PropertySpec> = wanted
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
        .collect();
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
        for spec in &specs {
            if existing.contains(&spec.name) {
                println!("exists   {}", spec.name);
                kept += 1;
                continue;
            }
            match client.create_deal_property(spec).await {
                Ok(true) => {
                    println!(
                        "created  {} ({}, {})",
                        spec.name, spec.kind, spec.field_type
                    );
                    created += 1;
                }
                Ok(false) => {
                    println!("exists   {}", spec.name);
                    kept += 1;
                }
                Err(e) => {
                    eprintln!("pcsync setup: cannot create `{}`: {e}", spec.name);
                    return ExitCode::from(1);
                }
            }
        }
        println!("{created} created, {kept} already there");
        ExitCode::SUCCESS
    })
}
