//! `lab results`: list, show and export what the results store holds. (Being written.)

use super::Context;
use crate::cli::ResultsCommand;
use crate::error::LabError;

pub fn run(ctx: &Context, cmd: &ResultsCommand) -> Result<i32, LabError> {
    let _ = (ctx, cmd);
    Err(LabError::Usage("lab results is not written yet".into()))
}
