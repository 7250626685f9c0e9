//! The market's events and their trace encoding.
//!
//! Events stay small (a few ids): what travels (requests, votes, proposals, grants,
//! receipts) waits in the market's mailbox ([`super::Mail`]) and the event names its slot,
//! so adding the market does not grow the engine's queue entries.

/// Something that happens in the market, addressed to a node (or the world).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A message arrives at its node: mailbox slot `mail`.
    Deliver {
        /// The mailbox slot.
        mail: u32,
    },
    /// An agent signs up and asks the committee for its funds.
    Signup {
        /// The agent.
        agent: u32,
    },
    /// An agent wants a lease.
    Arrive {
        /// The agent.
        agent: u32,
    },
    /// A quota client's retry or deadline timer.
    ClientTimer {
        /// The client.
        client: u32,
    },
    /// An agent gives up waiting for a provider's answer.
    ProposalTimeout {
        /// The lease attempt.
        lease: u32,
    },
    /// A provider's lease reaches its end (it stops it and meters it).
    LeaseEnd {
        /// The lease.
        lease: u32,
    },
    /// An agent checks, after its lease should have ended, that it got a receipt.
    LeaseDue {
        /// The lease.
        lease: u32,
    },
    /// An agent unlocks a lapsed lock nobody settled.
    Unlock {
        /// The lease whose lock it is.
        lease: u32,
    },
    /// EigenTrust over the last window, and the metrics of the epoch.
    ReputationEpoch,
}

impl Event {
    /// The trace kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Deliver { .. } => "market-deliver",
            Event::Signup { .. } => "market-signup",
            Event::Arrive { .. } => "market-arrive",
            Event::ClientTimer { .. } => "market-client-timer",
            Event::ProposalTimeout { .. } => "market-proposal-timeout",
            Event::LeaseEnd { .. } => "market-lease-end",
            Event::LeaseDue { .. } => "market-lease-due",
            Event::Unlock { .. } => "market-unlock",
            Event::ReputationEpoch => "market-epoch",
        }
    }

    /// The trace payload: the id the event carries.
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        let id = match self {
            Event::Deliver { mail: id }
            | Event::Signup { agent: id }
            | Event::Arrive { agent: id }
            | Event::ClientTimer { client: id }
            | Event::ProposalTimeout { lease: id }
            | Event::LeaseEnd { lease: id }
            | Event::LeaseDue { lease: id }
            | Event::Unlock { lease: id } => *id,
            Event::ReputationEpoch => u32::MAX,
        };
        out.extend_from_slice(&id.to_le_bytes());
    }
}
