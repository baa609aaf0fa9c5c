//! `futex_errno_sig`: the `futex_errno` storm with SIGUSR1 (SA_RESTART) aimed at the waiters.
//!
//! - **Checks**: everything `futex_errno` checks, and that EINTR only comes back when the
//!   waiting thread's own handler ran during that wait. A random waiter gets SIGUSR1 every
//!   ~200 µs (150–250 µs). With SA_RESTART an untimed wait restarts transparently; a timed
//!   one turns `-ERESTART_RESTARTBLOCK` into EINTR once the handler has run.
//! - **Kernel path**: `kernel/futex/waitwake.c:__futex_wait()` and `futex_wait()`'s restart
//!   block, with signal wake-ups racing `futex_wake_mark()`'s lockless wake; the exit path's
//!   restart handling (`kernel/entry/common.c`, `arch_do_signal_or_restart()`).
//! - **Should fail on**: `bad-futex-no-spurious-retry`. Signals add a second source of early
//!   wake-ups, so the stale `wake_up_q()` of the seed's race (a waiter woken by a signal, back
//!   asleep before the waker's delayed wake-up lands) hits more sleeps; without the retry
//!   those return errno 512/516 to user space. A kernel that invents EINTR without a signal
//!   fails here too.

use lab_guest_tests::harness::{self, Spec};
use lab_guest_tests::storm;

fn main() {
    harness::main(Spec::new("futex_errno_sig", 2000), |ctx| {
        storm::run(ctx, true)
    })
}
