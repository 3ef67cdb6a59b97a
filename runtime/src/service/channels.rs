//! Which notification channels this service can deliver to. A pack names its
//! channels; the service config decides whether SNS is one of them (a topic in
//! `notifications.sns_topic_arn`, which is optional). A pack's `sns` channel without
//! a topic is skipped: its tasks and notes are made as usual and its state recorded,
//! and the skip is said once at load, on `/rules` and by `pcsync check --config`.

use pcsync_engine::{CompiledPack, Effect, RuleSet};

use crate::config::NotificationsConfig;

/// The channels the service can deliver to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    /// Whether an SNS topic is configured.
    pub sns: bool,
}

impl Default for Channels {
    /// Every channel (tests, `pcsync test`).
    fn default() -> Self {
        Channels { sns: true }
    }
}

impl Channels {
    /// The channels `notifications` configures.
    pub fn of(notifications: &NotificationsConfig) -> Self {
        Channels {
            sns: notifications.sns_topic_arn.is_some(),
        }
    }

    /// Whether `effect` goes to a channel the service has: only a `Publish` without
    /// a topic does not.
    pub fn delivers(&self, effect: &Effect) -> bool {
        !matches!(effect, Effect::Publish { .. }) || self.sns
    }

    /// The enabled packs of `rules` with a channel this service does not have.
    pub fn missing<'a>(&self, rules: &'a RuleSet) -> impl Iterator<Item = &'a CompiledPack> {
        let sns = self.sns;
        rules
            .packs
            .iter()
            .filter(move |p| p.pack.enabled && !sns && p.pack.channels.sns.is_some())
    }

    /// One line per pack of [`Channels::missing`], for the log and `/rules`.
    pub fn warnings(&self, rules: &RuleSet) -> Vec<String> {
        self.missing(rules)
            .map(|p| {
                format!(
                    "pack `{}` has an `sns` channel but the config has no \
                     notifications.sns_topic_arn: its SNS messages are skipped (tasks and \
                     notes are still made)",
                    p.pack.name
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> Effect {
        Effect::Publish {
            pack: "p".into(),
            channel: "sns".into(),
            subject: "s".into(),
            message: "m".into(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn without_a_topic_only_messages_are_not_delivered() {
        let none = Channels::of(&NotificationsConfig::default());
        assert!(!none.delivers(&publish()));
        let note = Effect::CreateNote {
            pack: "p".into(),
            deal_id: "1".into(),
            body: "b".into(),
        };
        assert!(none.delivers(&note));
        assert!(Channels::default().delivers(&publish()));
    }
}
