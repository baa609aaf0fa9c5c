//! The guest side as the host sees it: the initramfs format (`newc`), the image lab
//! assembles per arch (`image`), and the kselftest programs built for it (`kselftest`).

pub mod image;
pub mod kselftest;
pub mod newc;
