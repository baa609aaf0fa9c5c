//! `lab bisect`'s decisions: which commit to test next, how often, and when the
//! culprit is known well enough, for crashes that reproduce only some of the time.
//!
//! Pure and synchronous: the command drives the builds, boots and runs, feeds each
//! step's result to [`search::Search`] and persists the list of observations, from
//! which [`search::Search::replay`] rebuilds the state.

pub mod search;

#[cfg(test)]
mod simulation;
