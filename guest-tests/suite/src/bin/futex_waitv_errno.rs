//! `futex_waitv_errno`: a `futex_waitv(2)` storm that must never see an impossible errno.
//!
//! - **Checks**: the `futex_errno` storm with each wait a `futex_waitv` on 4 distinct words of
//!   the 64, untimed or with random 1–50 µs or 0.2–2 ms timeouts: errno only EAGAIN,
//!   ETIMEDOUT or EINTR and never ≥ 512; no ETIMEDOUT before the timeout; a returned index
//!   only for a word a FUTEX_WAKE was in flight on. Details in `lab_guest_tests::storm`.
//! - **Kernel path**: `kernel/futex/waitwake.c`: `futex_wait_multiple()` (setup, sleep,
//!   unqueue, and its own spurious-wake-up retry) against `futex_wake()`'s lockless wake-up.
//! - **Should fail on**: `bad-futex-waitv-no-retry`, which drops that retry: a stale wake-up
//!   returns `-ERESTARTSYS` with no signal pending, and user space sees errno 512.
//!   `futex_amp_wake_delay_us` widens the window that makes wake-ups stale.

use lab_guest_tests::harness::{self, Spec};
use lab_guest_tests::storm::{self, Mode};

fn main() {
    harness::main(Spec::new("futex_waitv_errno", 2000), |ctx| {
        storm::run_mode(
            ctx,
            Mode {
                signals: false,
                waitv: true,
            },
        )
    })
}
