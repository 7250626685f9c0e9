//! The auditor: invariants checked on every certificate and every grant of a run.
//!
//! - **No double-spend**: at most one certified op per committee slot. The auditor keeps
//!   the digest of the op certified in each slot; a second, different one is a violation
//!   (it can only happen when more than `f` validators sign conflicting votes).
//! - **Quota conserved**: certificates are applied to a real
//!   [`Accounts`](agora_protocol::committee::Accounts); for the account a certificate
//!   touched, `available + locked + spent = credited + granted`, and what is locked or
//!   spent never exceeds what was credited or granted.
//! - **No lease on an expired offer, none without a covering lock**: a grant must name an
//!   offer its provider published that had not expired when the agent signed the request,
//!   and the agent's account must hold a certified lock for that very lease, naming that
//!   provider, of at least the grant's reservation.

use std::collections::BTreeMap;

use agora_protocol::committee::{Accounts, Certificate, Committee, Op, Slot};
use agora_protocol::lease::{LeaseGrant, LeaseRequest};
use agora_protocol::{Digest, Timestamp};

/// The invariants' state.
#[derive(Debug)]
pub struct Auditor {
    accounts: Accounts,
    slots: BTreeMap<Slot, Digest>,
    /// Second certificates in a taken slot.
    pub double_spends: u64,
    /// Micro-credits locked by such second certificates (spent twice).
    pub overspend_micro: u64,
    /// Grants checked.
    pub grants_checked: u64,
}

impl Auditor {
    /// An auditor of `committee`'s certificates.
    pub fn new(committee: Committee) -> Self {
        Auditor {
            accounts: Accounts::new(committee),
            slots: BTreeMap::new(),
            double_spends: 0,
            overspend_micro: 0,
            grants_checked: 0,
        }
    }

    /// The accounts as certified so far.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Checks and applies a certificate.
    ///
    /// # Errors
    /// A description of the violated invariant.
    pub fn certified(&mut self, cert: &Certificate) -> Result<(), String> {
        let slot = cert.slot();
        let digest = cert.digest();
        match self.slots.get(&slot) {
            Some(earlier) if *earlier != digest => {
                self.double_spends += 1;
                if let Op::Chain(op) = cert.op()
                    && let agora_protocol::committee::Action::Lock(terms) = &op.body().action
                {
                    self.overspend_micro = self.overspend_micro.saturating_add(terms.amount_micro);
                }
                return Err(format!(
                    "double-spend: a second {} op certified in slot {slot} (first {earlier}, now {digest})",
                    cert.op().kind()
                ));
            }
            Some(_) => return Ok(()),
            None => {
                self.slots.insert(slot, digest);
            }
        }
        self.accounts
            .apply(cert)
            .map_err(|e| format!("certificate in {slot} does not apply: {e}"))?;
        self.conserved(&cert.op().account())
    }

    /// Conservation for one account.
    fn conserved(&self, id: &agora_protocol::AgoraId) -> Result<(), String> {
        let Some(acc) = self.accounts.get(id) else {
            return Ok(());
        };
        let funds = u128::from(acc.credited_micro()) + u128::from(acc.granted_micro());
        let used = u128::from(acc.locked_micro()) + u128::from(acc.spent_micro());
        if used > funds {
            return Err(format!(
                "quota overspent by {id}: locked {} + spent {} > credited {} + granted {}",
                acc.locked_micro(),
                acc.spent_micro(),
                acc.credited_micro(),
                acc.granted_micro()
            ));
        }
        if used + u128::from(acc.available_micro()) != funds {
            return Err(format!("quota of {id} not conserved"));
        }
        Ok(())
    }

    /// Conservation over every account, and the totals (credited + granted, and what is
    /// available, locked and spent).
    ///
    /// # Errors
    /// The first account that breaks it.
    pub fn conservation(&self) -> Result<(u128, u128), String> {
        let (mut funds, mut held) = (0u128, 0u128);
        for (id, acc) in self.accounts.iter() {
            self.conserved(id)?;
            funds += u128::from(acc.credited_micro()) + u128::from(acc.granted_micro());
            held += u128::from(acc.available_micro())
                + u128::from(acc.locked_micro())
                + u128::from(acc.spent_micro());
        }
        Ok((funds, held))
    }

    /// Checks a grant against the request and the offer's expiry (`None`: an offer its
    /// provider never published, or forgot).
    ///
    /// # Errors
    /// A description of the violated invariant.
    pub fn check_grant(
        &mut self,
        grant: &LeaseGrant,
        request: &LeaseRequest,
        offer_expiry: Option<Timestamp>,
    ) -> Result<(), String> {
        self.grants_checked += 1;
        match offer_expiry {
            None => {
                return Err(format!(
                    "lease {} granted on an offer its provider did not publish",
                    grant.lease
                ));
            }
            Some(expiry) if request.issued_at > expiry => {
                return Err(format!(
                    "lease {} granted on an offer that expired at {expiry}, before the request ({})",
                    grant.lease, request.issued_at
                ));
            }
            Some(_) => {}
        }
        let covered = self
            .accounts
            .get(&grant.agent)
            .and_then(|acc| acc.lock_for(&grant.lease, &grant.provider))
            .is_some_and(|(_, lock)| {
                lock.provider == grant.provider && lock.amount_micro >= grant.reserved_micro
            });
        if !covered {
            return Err(format!(
                "lease {} granted to {} without a certified lock covering it",
                grant.lease, grant.agent
            ));
        }
        Ok(())
    }
}
