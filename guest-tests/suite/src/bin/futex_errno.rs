//! `futex_errno`: a FUTEX_WAIT/FUTEX_WAKE storm that must never see an impossible errno.
//!
//! - **Checks**: every FUTEX_WAIT return of 4 waiters on 64 cache-line-separated words, with
//!   untimed waits and random 1–50 µs or 0.2–2 ms timeouts, against 2 wakers: errno only
//!   EAGAIN, ETIMEDOUT or EINTR and never ≥ 512; no ETIMEDOUT before the timeout; no 0 return
//!   without a FUTEX_WAKE on that word in flight. Details in `lab_guest_tests::storm`.
//! - **Kernel path**: `kernel/futex/waitwake.c`: `futex_wake()` → `futex_wake_mark()` (the
//!   lockless wake: `lock_ptr = NULL`, then `wake_up_q()` after `hb->lock` is dropped) racing
//!   with timeouts in `__futex_wait()`.
//! - **Should fail on**: `bad-futex-no-spurious-retry`. Without the retry in `__futex_wait()`
//!   (`if (!signal_pending(current)) goto retry;`), a stale or spurious wake-up returns
//!   `-ERESTARTSYS` with no signal pending, so the exit path does not restart the call and
//!   user space sees errno 512 (untimed) or 516 (timed). On 6.12-RT this took 0.15–0.7 s with
//!   no amplifier; `futex_amp_spurious_wake_us` makes it immediate everywhere.

use lab_guest_tests::harness::{self, Spec};
use lab_guest_tests::storm;

fn main() {
    harness::main(Spec::new("futex_errno", 2000), |ctx| storm::run(ctx, false))
}
