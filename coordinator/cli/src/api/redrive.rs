//! RedriveExecution: an execution that ended FAILED, ABORTED or TIMED_OUT runs again from
//! the state it ended in (see `coordinator::fleet::redrive`), through the same client as
//! `mapfleet redrive`.

use serde_json::{Value, json};

use super::backend::Store;
use super::store::check_execution_arn;
use super::wire::{ApiError, Input, epoch};

pub(super) async fn redrive_execution(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = input.required_len("executionArn", 256)?;
    check_execution_arn(arn)?;
    let token = input.str("clientToken")?;
    if let Some(t) = token
        && (t.is_empty() || t.len() > 64 || !t.bytes().all(|b| (b'!'..=b'~').contains(&b)))
    {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'clientToken' failed to satisfy constraint: Member must satisfy regular expression pattern: [!-~]+ and length 1-64",
        ));
    }
    if !store.execution_exists(arn).await? {
        return Err(ApiError::execution_missing(arn));
    }
    let done = store.redrive(arn, token).await?;
    tracing::info!(execution = %arn, count = done.count, kept = done.kept_children, "redriven");
    Ok(json!({ "redriveDate": epoch(&done.date) }))
}
