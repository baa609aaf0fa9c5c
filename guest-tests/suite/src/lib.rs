//! Shared harness of the guest tests (placeholder until the suite lands).
