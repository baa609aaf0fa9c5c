//! `lab compare`: do two kernels behave differently? Interleaved runs of both sides on every
//! arch, sequential statistics per question, verdicts with stated error rates.

pub mod model;
