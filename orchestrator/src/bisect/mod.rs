//! `lab bisect`: which commit (or patch of a series) first makes a test fail, for failures that
//! reproduce only some of the time, found with real builds and real guests.
//!
//! Split so that the decisions are pure and the effects are in one place:
//! - [`search`]: the decision core (which candidate next, how many runs, when the culprit is
//!   known well enough), pure and synchronous, with its model stated;
//! - [`state`]: what a bisection is resumed from, as the results store keeps it;
//! - [`classify`]: what one step's outcomes mean for the search, pure;
//! - [`step`]: one step carried out: build, boot, run, classify (also `lab bisect-step`'s
//!   verdict on a git checkout);
//! - [`driver`]: the loop that takes the steps the search asks for, feeds it what they showed,
//!   saves the state after every step and reports [`driver::Event`]s; it never prints.
//!
//! The command (`commands/bisect.rs`) resolves the flags, calls the driver and renders.

pub mod classify;
pub mod driver;
pub mod search;
pub mod state;
pub mod step;

#[cfg(test)]
mod simulation;
