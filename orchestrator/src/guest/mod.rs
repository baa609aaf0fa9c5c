//! The guest side as the host sees it: the initramfs format (`newc`), the image lab
//! assembles per arch (`image`), and the programs built for it from the kernel tree: the
//! kselftests (`kselftest`) and perf (`perf`).

pub mod image;
pub mod kselftest;
pub mod newc;
pub mod perf;
