//! `lab compare A B`. (Being written.)

use super::Context;
use crate::cli::CompareArgs;
use crate::error::LabError;

pub async fn run(ctx: &Context, args: &CompareArgs) -> Result<i32, LabError> {
    let _ = (ctx, args);
    Err(LabError::Usage("lab compare is not written yet".into()))
}
