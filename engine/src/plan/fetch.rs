//! What a run must load before it plans: the union of the triggered packs' `needs`,
//! one load per link property. The runtime fetches exactly this.

use crate::compile::CompiledPack;

/// What to load for a group of packs that find their opportunity the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// The deal property that holds the opportunity id.
    pub link_property: String,
    /// Deal properties, the link property and the properties `create.incomplete` and
    /// `update.incomplete` set (read to tell whether what is missing changed) among them.
    pub deal: Vec<String>,
    /// Properties of the deal's primary company; none means no company read.
    pub company: Vec<String>,
    /// GetOpportunity.
    pub opportunity: bool,
    /// GetAwsOpportunitySummary.
    pub aws_summary: bool,
    /// The last-known state pcsync stored.
    pub previous: bool,
    /// Resource snapshot templates.
    pub snapshots: Vec<String>,
    /// The packs (by their index in the rule set) this load serves.
    pub packs: Vec<usize>,
}

/// Groups `packs` (index in the rule set, pack) by link property, each group with the
/// union of its packs' needs, in the order the packs come.
pub fn fetches<'a>(packs: impl IntoIterator<Item = (usize, &'a CompiledPack)>) -> Vec<Fetch> {
    let mut out: Vec<Fetch> = Vec::new();
    for (index, pack) in packs {
        let needs = &pack.pack.needs;
        let group = match out
            .iter()
            .position(|f| f.link_property == needs.link_property)
        {
            Some(i) => &mut out[i],
            None => {
                out.push(Fetch {
                    link_property: needs.link_property.clone(),
                    ..Fetch::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        let incomplete = pack
            .pack
            .create
            .iter()
            .map(|c| &c.incomplete)
            .chain(pack.pack.update.iter().map(|u| &u.incomplete))
            .flat_map(|e| e.set_deal.keys());
        for p in needs
            .deal
            .iter()
            .chain([&needs.link_property])
            .chain(incomplete)
        {
            add(&mut group.deal, p);
        }
        for p in &needs.company {
            add(&mut group.company, p);
        }
        for t in &needs.snapshots {
            add(&mut group.snapshots, t);
        }
        group.opportunity |= needs.opportunity;
        group.aws_summary |= needs.aws_summary;
        group.previous |= needs.previous;
        group.packs.push(index);
    }
    out
}

impl Fetch {
    /// What the runs of `events` (this load's packs' events) read: Partner Central
    /// data every one of them leaves unread (`schedule.reads`,
    /// [`crate::Event::scheduled_reads`]) is not loaded.
    pub fn for_events<'e>(mut self, events: impl IntoIterator<Item = &'e crate::Event>) -> Fetch {
        let (mut opportunity, mut aws_summary) = (false, false);
        for event in events {
            opportunity |= !event.leaves_unread("opportunity");
            aws_summary |= !event.leaves_unread("aws_summary");
        }
        self.opportunity &= opportunity;
        self.aws_summary &= aws_summary;
        self
    }
}

fn add(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_string());
    }
}
