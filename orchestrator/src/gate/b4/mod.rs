//! b4's external check protocol: reading the patch mail b4 pipes in (`mail`), and
//! answering in the form b4 reads back (`protocol`).
//!
//! b4 (`mricon/b4`) runs a check command with one RFC 2822 message on stdin: a patch, or the
//! cover letter for a series check (`b4 review`'s `review-perpatch-check-cmd` and
//! `review-series-check-cmd`, `b4 prep --check`'s `prep-perpatch-check-cmd`). b4 sets
//! `B4_TRACKING_FILE` to a JSON file describing the series. The two halves meet only in
//! `lab gate --b4`: [`parse_message`] turns the mail into a patch lab can check, and the
//! checks' outcomes go back as [`CheckResult`]s, written by [`to_json`] or [`to_prep_lines`].

mod mail;
mod protocol;

pub use mail::{parse_message, B4Error, MailPatch};
pub use protocol::{
    checkpatch_result, to_json, to_prep_lines, validate_json, warnings_result, CheckResult, Status,
};
