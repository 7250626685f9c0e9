//! Agents on this node: signup, accounts and standing.
//!
//! - [`standing`]: [`standing::judge`] turns a signed signup record into a [`Standing`]
//!   (tier, limits, owner) with this node's trust store and policy: the one check both the
//!   signup endpoint and provider admission run.
//! - [`signup`]: the [`SignupService`] behind `GET /v1/signup/challenge` and
//!   `POST /v1/signup`: rate limits per source address and prefix, challenges consumed once,
//!   proof of work, accounts.
//! - [`account`]: the [`Account`] kept in the store's `accounts` column.
//! - [`source`]: token buckets per source address and prefix.
//! - [`tokens`]: short bearer tokens that authenticate an agent to this node only, each
//!   backed by a delegation the agent signed to the node (under which `/mcp` acts for it).
//! - [`quota`]: what an agent signs for the quota committee (locks, credits, free-tier
//!   claims) and the account view nodes answer.
//! - [`record_file`]: the signup record kept beside the agent's key (`KEYFILE.signup`).
//! - [`request`]: building what an agent signs (lease requests from a quote, operations),
//!   for the CLI and the MCP tools that sign beside the agent.
//! - [`services`]: building what an owner signs for its published services (records,
//!   withdrawals, grants, records refreshed after an extension), for the same two.

pub mod account;
pub mod quota;
pub mod record_file;
pub mod request;
pub mod services;
pub mod signup;
pub mod source;
pub mod standing;
pub mod tokens;

pub use account::Account;
pub use signup::{IssuedChallenge, SignupError, SignupService};
pub use standing::{SignupPolicy, Standing, StandingError, judge};
pub use tokens::{Session, TokenError, Tokens};
