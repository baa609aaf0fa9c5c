//! Readers for the output of the suites kernel developers already trust, so that lab can run
//! them next to its own tests and judge them the same way: kselftest programs print TAP or
//! KTAP ([`ktap`]), rt-tests write JSON ([`cyclictest`], [`pairs`] for the wake-up pair
//! tests, [`pi_stress`] with the lines it prints).
//!
//! Pure and allocation-light, with no knowledge of the guest or the host: the guest adapter
//! that runs a program under lab's watchdog turns what these readers give into lab's result
//! line, and the raw output is kept beside it as evidence.

pub mod cyclictest;
pub mod ktap;
pub mod pairs;
pub mod perf_bench;
pub mod pi_stress;
