//! `lab gate`: is this patch series fit to post to LKML?
//!
//! The gate owns the checks a maintainer would run on a series before reading it: the
//! kernel's own `scripts/checkpatch.pl` ([`checkpatch`]), compiler warnings the series adds to
//! the files it touches ([`warnings`]), and speaking b4's CI-check protocol so that b4 can run
//! lab on each patch mail ([`b4`]). The building blocks here are synchronous and, except for
//! running checkpatch, pure: they take text and return plain data, so that the gate's verdict
//! can be unit-tested without a kernel build.
//!
//! [`series`] loads a series and runs those checks patch by patch, building on every arch;
//! [`pipeline`] adds the runtime comparison and the bisection and reaches the verdict
//! ([`report`]).

pub mod b4;
pub mod checkpatch;
pub mod pipeline;
pub mod report;
pub mod series;
pub mod warnings;
