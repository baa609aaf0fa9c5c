//! The guest side as the host sees it: the initramfs format (`newc`) and the image lab
//! assembles per arch (`image`).

pub mod image;
pub mod newc;
