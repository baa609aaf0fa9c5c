//! Talking to a target: SSH (`ssh`) drives guests and real boards alike.

pub mod ssh;
