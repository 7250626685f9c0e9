//! Scenario files: what network to simulate, for how long, under which conditions.
//!
//! A scenario is TOML (see `sim/scenarios/README.md` for every field), parsed with serde
//! into [`Scenario`]. Unknown fields are refused, every value is checked, and any error
//! names the file, the line and the field ([`ScenarioError::Invalid`]).
//!
//! ```
//! let scenario = agora_sim::Scenario::from_toml(
//!     "duration = \"30s\"\n[nodes]\ncount = 10\n",
//!     "inline",
//! )?;
//! assert_eq!(scenario.nodes.count, 10);
//! # Ok::<(), agora_sim::ScenarioError>(())
//! ```

mod error;
mod sections;
mod values;

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

pub use error::ScenarioError;
pub use sections::{Adversary, Attack, Byzantine, Committee, Lie, Market, Providers, Reputation};
pub use sections::{
    Churn, ChurnAction, ChurnEvent, Gossip, Latency, Link, Metrics, Network, NodeRange, Nodes,
    Partition, Region, RegionLink, Side, Subscribe, Workload,
};
pub use values::{NonNegative, Positive, Probability, Span, parse_span};

/// The seed used when neither the scenario nor the command line gives one.
pub const DEFAULT_SEED: u64 = 1;

/// A whole scenario, as read from a file and checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name for reports (defaults to the file name without extension).
    #[serde(default)]
    pub name: String,
    /// Free text saying what the scenario is for.
    #[serde(default)]
    pub description: String,
    /// The RNG seed, unless the command line overrides it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Span,
    /// How many nodes, in which regions.
    pub nodes: Nodes,
    /// Latency, bandwidth and loss between regions.
    #[serde(default)]
    pub network: Network,
    /// Scheduled network partitions and their heals.
    #[serde(default)]
    pub partitions: Vec<Partition>,
    /// Crashes, restarts and joins.
    #[serde(default)]
    pub churn: Churn,
    /// gossipsub parameters.
    #[serde(default)]
    pub gossip: Gossip,
    /// Who publishes offers, and how often.
    #[serde(default)]
    pub workload: Workload,
    /// What the metrics sample, and when.
    #[serde(default)]
    pub metrics: Metrics,
    /// Agents leasing from providers through the real admission, quota committee and
    /// evidence log (absent: offer gossip only).
    pub market: Option<Spanned<Market>>,
    /// The quota committee (needs `[market]`).
    pub committee: Option<Spanned<Committee>>,
    /// Attackers among the agents (needs `[market]`).
    pub adversary: Option<Spanned<Adversary>>,
    /// EigenTrust epochs (needs `[market]`).
    pub reputation: Option<Spanned<Reputation>>,
}

fn default_seed() -> u64 {
    DEFAULT_SEED
}

impl Scenario {
    /// Parses and checks a scenario; `origin` names it in errors (usually the file path).
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] naming the line and field of the first problem.
    pub fn from_toml(source: &str, origin: &str) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario =
            toml::from_str(source).map_err(|e| ScenarioError::from_toml(&e, source, origin))?;
        if scenario.name.is_empty() {
            scenario.name = Path::new(origin)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("scenario")
                .to_owned();
        }
        scenario
            .validate()
            .map_err(|(span, message)| ScenarioError::at(source, origin, span, message))?;
        Ok(scenario)
    }

    /// Reads, parses and checks the scenario file at `path`.
    ///
    /// # Errors
    /// [`ScenarioError::Read`] when the file cannot be read, else as
    /// [`Scenario::from_toml`].
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&source, &path.display().to_string())
    }

    /// The `[market]` section, if any.
    pub fn market(&self) -> Option<&Market> {
        self.market.as_ref().map(Spanned::get_ref)
    }

    /// The `[committee]` section, or its defaults.
    pub fn committee(&self) -> Committee {
        self.committee
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_default()
    }

    /// The `[adversary]` section, or no attack.
    pub fn adversary(&self) -> Adversary {
        self.adversary
            .as_ref()
            .map(|a| a.get_ref().clone())
            .unwrap_or_default()
    }

    /// The `[reputation]` section, or its defaults.
    pub fn reputation(&self) -> Reputation {
        self.reputation
            .as_ref()
            .map(|r| r.get_ref().clone())
            .unwrap_or_default()
    }

    /// The total number of node slots: the initial nodes plus those that join later.
    pub fn node_slots(&self) -> u32 {
        self.nodes.count.saturating_add(self.churn.joins)
    }

    /// The index of region `name` in [`Nodes::regions`].
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.nodes
            .regions
            .iter()
            .position(|r| r.name.get_ref() == name)
    }

    /// Checks what one section alone cannot: references between sections and bounds that
    /// depend on the node count. Returns the offending value's span and a message.
    fn validate(&self) -> Result<(), (core::ops::Range<usize>, String)> {
        let mut names: Vec<&str> = Vec::new();
        for region in &self.nodes.regions {
            let name = region.name.get_ref();
            agora_protocol::bounds::token("region", name, 32)
                .map_err(|e| (region.name.span(), e.to_string()))?;
            if names.contains(&name.as_str()) {
                return Err((
                    region.name.span(),
                    format!("region {name:?} is listed twice"),
                ));
            }
            names.push(name);
        }
        let known = |name: &toml::Spanned<String>| {
            if self.region_index(name.get_ref()).is_some() {
                Ok(())
            } else {
                Err((
                    name.span(),
                    format!(
                        "unknown region {:?} (nodes.regions has {})",
                        name.get_ref(),
                        names.join(", ")
                    ),
                ))
            }
        };
        for link in &self.network.links {
            link.regions.iter().try_for_each(known)?;
        }
        let slots = self.node_slots();
        let in_range = |range: &toml::Spanned<NodeRange>| {
            if range.get_ref().end <= slots {
                Ok(())
            } else {
                Err((
                    range.span(),
                    format!(
                        "node range ends at {} but the scenario has {slots} nodes \
                         (nodes.count plus churn.joins)",
                        range.get_ref().end
                    ),
                ))
            }
        };
        for partition in &self.partitions {
            for side in &partition.sides {
                side.regions.iter().try_for_each(known)?;
                side.nodes.iter().try_for_each(in_range)?;
            }
        }
        for event in &self.churn.schedule {
            in_range(&event.nodes)?;
        }
        if self.market.is_none() {
            let lone = [
                self.committee.as_ref().map(|c| ("committee", c.span())),
                self.adversary.as_ref().map(|a| ("adversary", a.span())),
                self.reputation.as_ref().map(|r| ("reputation", r.span())),
            ];
            if let Some((name, span)) = lone.into_iter().flatten().next() {
                return Err((span, format!("[{name}] needs a [market] section")));
            }
        }
        if let Some(adversary) = &self.adversary {
            let a = adversary.get_ref();
            let max = if a.kind == Attack::Sybil { 100.0 } else { 1.0 };
            if a.fraction.0 > max {
                return Err((
                    adversary.span(),
                    format!(
                        "adversary.fraction {} is above {max} for a {} attack",
                        a.fraction.0,
                        a.kind.as_str()
                    ),
                ));
            }
        }
        if let (Some(adversary), Some(market)) = (&self.adversary, &self.market)
            && adversary.get_ref().kind == Attack::Eclipse
        {
            let a = adversary.get_ref();
            let providers = *self.workload.providers.get_ref();
            let liars =
                (f64::from(providers) * market.get_ref().providers.lying_share.0).round() as u32;
            let needed = u64::from(providers) + u64::from(a.victims) + u64::from(a.attackers);
            let fail = |what: String| Err((adversary.span(), what));
            if liars == 0 {
                return fail(
                    "an eclipse needs lying providers (market.providers.lying_share): \
                     their offers are the ones the attackers let through"
                        .to_owned(),
                );
            }
            if a.victims == 0 {
                return fail("an eclipse needs adversary.victims of at least 1".to_owned());
            }
            if needed > u64::from(self.nodes.count) {
                return fail(format!(
                    "an eclipse needs {needed} nodes (providers, victims and attackers) \
                     but nodes.count is {}",
                    self.nodes.count
                ));
            }
        }
        if let Some(market) = &self.market
            && *self.workload.providers.get_ref() == 0
        {
            return Err((
                market.span(),
                "[market] needs providers (workload.providers is 0)".to_owned(),
            ));
        }
        if self.workload.providers.get_ref() > &self.nodes.count {
            return Err((
                self.workload.providers.span(),
                format!(
                    "{} providers but only {} nodes",
                    self.workload.providers.get_ref(),
                    self.nodes.count
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
