//! Serial console watcher (placeholder until the module lands).
