//! Activities: CreateActivity, DescribeActivity, ListActivities, DeleteActivity, their tags
//! (TagResource, UntagResource, ListTagsForResource with an activity ARN), and the worker's
//! side, GetActivityTask, SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat,
//! over `coordinator::fleet::activities` (the registry and tokens in the fleet's Redis, the
//! activity queues on its RabbitMQ, the outcomes through the workers' exactly-once path).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use coordinator::asl::error::StatesError;
use coordinator::embedded::{TokenAnswer, TokenRefused};
use coordinator::fleet::activities::{
    Activities, ActivityError, ActivityRecord, TagRefused, Taken,
};
use shared::topology::activity_name;

use super::tags;
use crate::api::wire::{
    ApiError, DEFAULT_PAGE, Input, MAX_PAGE, check_len, encode_token, epoch_ms,
};

/// Step Functions' limit on a task's output.
const MAX_OUTPUT: usize = 262_144;

/// The operations answered here.
pub const OPERATIONS: &[&str] = &[
    "CreateActivity",
    "DescribeActivity",
    "ListActivities",
    "DeleteActivity",
    "GetActivityTask",
    "SendTaskSuccess",
    "SendTaskFailure",
    "SendTaskHeartbeat",
];

/// The shortest pause between two looks into an empty activity queue, and the longest.
const PAUSE: (Duration, Duration) = (Duration::from_millis(25), Duration::from_millis(250));

/// What the activity operations need: the fleet's activities and how long GetActivityTask
/// holds a request when no task comes.
#[derive(Clone)]
pub struct ActivityApi {
    pub activities: Activities,
    pub poll: Duration,
}

/// Runs `operation` if it is one of [`OPERATIONS`], or a tagging call on an activity.
pub async fn call(
    api: &ActivityApi,
    operation: &str,
    input: &Input,
) -> Option<Result<Value, ApiError>> {
    let on_activity = || {
        input
            .0
            .get("resourceArn")
            .and_then(Value::as_str)
            .is_some_and(|arn| activity_name(arn).is_some())
    };
    Some(match operation {
        "TagResource" if on_activity() => tag_resource(api, input).await,
        "UntagResource" if on_activity() => untag_resource(api, input).await,
        "ListTagsForResource" if on_activity() => list_tags_for_resource(api, input).await,
        "CreateActivity" => create_activity(api, input).await,
        "DescribeActivity" => describe_activity(api, input).await,
        "ListActivities" => list_activities(api, input).await,
        "DeleteActivity" => delete_activity(api, input).await,
        "GetActivityTask" => get_activity_task(api, input).await,
        "SendTaskSuccess" => send_task_success(api, input).await,
        "SendTaskFailure" => send_task_failure(api, input).await,
        "SendTaskHeartbeat" => send_task_heartbeat(api, input).await,
        _ => return None,
    })
}

/// An [`ActivityError`] as AWS answers it.
fn api_error(e: ActivityError) -> ApiError {
    match e {
        ActivityError::NoActivity(_) => ApiError::new("ActivityDoesNotExist", e.to_string()),
        ActivityError::InvalidToken(_) => ApiError::new("InvalidToken", e.to_string()),
        ActivityError::TimedOut => ApiError::new("TaskTimedOut", e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// The activity name in an activity ARN (any region and account).
fn activity_of(arn: &str) -> Result<&str, ApiError> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid_arn(arn));
    }
    activity_name(arn).ok_or_else(|| {
        ApiError::new(
            "InvalidArn",
            format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        )
    })
}

async fn existing(api: &ActivityApi, arn: &str) -> Result<ActivityRecord, ApiError> {
    let name = activity_of(arn)?;
    api.activities
        .describe(name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| api_error(ActivityError::NoActivity(arn.to_string())))
}

async fn create_activity(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let name = input.required("name")?;
    if name.chars().count() > 80 || crate::cli::check_name(name).is_err() {
        return Err(ApiError::new(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ));
    }
    if let Some(kind) = input.0.get("encryptionConfiguration").map(|c| &c["type"])
        && !kind.is_null()
        && kind != "AWS_OWNED_KEY"
    {
        return Err(ApiError::new(
            "InvalidEncryptionConfiguration",
            "mapfleet keeps activity data unencrypted in its Redis: only the AWS_OWNED_KEY \
             encryption type is accepted",
        ));
    }
    let tags = tags::request_tags(input)?;
    tags::check_count(&tags, &coordinator::fleet::activities::activity_arn(name))?;
    let record = api
        .activities
        .create(name, &tags, tags::MAX_TAGS)
        .await
        .map_err(api_error)?;
    tracing::info!(activity = %record.arn, "activity created");
    Ok(json!({ "activityArn": record.arn, "creationDate": epoch_ms(record.creation_ms) }))
}

async fn describe_activity(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let arn = input.required_len("activityArn", 256)?;
    let a = existing(api, arn).await?;
    Ok(json!({
        "activityArn": a.arn,
        "name": a.name,
        "creationDate": epoch_ms(a.creation_ms),
        "encryptionConfiguration": { "type": "AWS_OWNED_KEY" },
    }))
}

async fn list_activities(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let max = input.max_results(MAX_PAGE, DEFAULT_PAGE)?;
    let after = input.token("activities")?;
    let all = api.activities.list().await.map_err(api_error)?;
    let page: Vec<&ActivityRecord> = all
        .iter()
        .filter(|a| after.as_deref().is_none_or(|t| a.name.as_str() > t))
        .take(max + 1)
        .collect();
    let more = page.len() > max;
    let page = &page[..page.len().min(max)];
    let mut out = json!({
        "activities": page.iter().map(|a| json!({
            "activityArn": a.arn,
            "name": a.name,
            "creationDate": epoch_ms(a.creation_ms),
        })).collect::<Vec<_>>(),
    });
    if more && let Some(last) = page.last() {
        out["nextToken"] = json!(encode_token("activities", &last.name));
    }
    Ok(out)
}

async fn delete_activity(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let arn = input.required_len("activityArn", 256)?;
    let name = activity_of(arn)?;
    // An unknown activity is not an error, as with AWS.
    api.activities.delete(name).await.map_err(api_error)?;
    tracing::info!(activity = %arn, "activity deleted");
    Ok(json!({}))
}

/// The activity a tagging call names; an unknown one is ResourceNotFound, as AWS answers.
async fn tagged(api: &ActivityApi, input: &Input) -> Result<(String, String), ApiError> {
    let arn = input.required_len("resourceArn", 256)?;
    let name = activity_of(arn)?;
    match api.activities.describe(name).await.map_err(api_error)? {
        Some(_) => Ok((arn.to_string(), name.to_string())),
        None => Err(ApiError::resource_missing(arn)),
    }
}

async fn tag_resource(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let (arn, name) = tagged(api, input).await?;
    if input.0.get("tags").is_none_or(Value::is_null) {
        return Err(ApiError::missing("tags"));
    }
    let tags = tags::request_tags(input)?;
    tags::check_count(&tags, &arn)?;
    match api
        .activities
        .tag(&name, &tags, tags::MAX_TAGS)
        .await
        .map_err(api_error)?
    {
        Ok(()) => Ok(json!({})),
        Err(TagRefused::NoActivity) => Err(ApiError::resource_missing(&arn)),
        Err(TagRefused::TooMany) => Err(tags::too_many(&arn)),
    }
}

async fn untag_resource(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let (_, name) = tagged(api, input).await?;
    let keys = tags::request_tag_keys(input)?;
    api.activities
        .untag(&name, &keys)
        .await
        .map_err(api_error)?;
    Ok(json!({}))
}

async fn list_tags_for_resource(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let (_, name) = tagged(api, input).await?;
    let tags: Vec<Value> = api
        .activities
        .tags(&name)
        .await
        .map_err(api_error)?
        .into_iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    Ok(json!({ "tags": tags }))
}

/// Long poll: looks into the activity's queue until a task comes or `api.poll` passed (then
/// an answer without a task, as AWS's). Each look runs as a task of its own, so a client that
/// hangs up between looks loses no step; one that hangs up during a look may (the step then
/// times out, as with AWS).
async fn get_activity_task(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let arn = input.required_len("activityArn", 256)?.to_string();
    let worker = input.str("workerName")?.unwrap_or_default().to_string();
    if !worker.is_empty() {
        check_len("workerName", &worker, 80)?;
    }
    existing(api, &arn).await?;
    let until = Instant::now() + api.poll;
    let mut pause = PAUSE.0;
    loop {
        let activities = api.activities.clone();
        let (a, w) = (arn.clone(), worker.clone());
        let taken = tokio::spawn(async move { activities.take(&a, &w).await })
            .await
            .map_err(|e| ApiError::internal(format!("a look into activity {arn}'s queue: {e}")))?
            .map_err(api_error)?;
        match taken {
            Taken::Task(task) => {
                tracing::debug!(activity = %arn, "activity task handed out");
                return Ok(json!({ "taskToken": task.token, "input": task.input.to_string() }));
            }
            Taken::Stale => continue,
            Taken::Empty => {}
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(json!({}));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(PAUSE.1);
    }
}

fn task_token(input: &Input) -> Result<&str, ApiError> {
    let token = input.required("taskToken")?;
    check_len("taskToken", token, 2048)?;
    Ok(token)
}

/// The token's answers (SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat).
const ANSWERS: &[&str] = &["SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"];

/// A SendTask* request: its token and what it sends.
fn task_answer<'a>(operation: &str, input: &'a Input) -> Result<(&'a str, TokenAnswer), ApiError> {
    let token = task_token(input)?;
    let answer = match operation {
        "SendTaskSuccess" => TokenAnswer::Result(Ok(success_output(input)?)),
        "SendTaskFailure" => TokenAnswer::Result(Err(failure_error(input)?)),
        _ => TokenAnswer::Heartbeat,
    };
    Ok((token, answer))
}

/// SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat where the store runs the
/// executions itself (embedded `mapfleet serve`): the `.waitForTaskToken` tokens of its
/// runs. `None` for any other operation.
pub async fn answer_in_store(
    store: &crate::api::backend::Store,
    operation: &str,
    input: &Input,
) -> Option<Result<Value, ApiError>> {
    if !ANSWERS.contains(&operation) {
        return None;
    }
    Some(
        async {
            let (token, answer) = task_answer(operation, input)?;
            match store.send_task(token, answer).await? {
                Ok(()) => Ok(json!({})),
                Err(TokenRefused::Invalid) => {
                    Err(api_error(ActivityError::InvalidToken("Invalid token")))
                }
                Err(TokenRefused::TimedOut) => Err(api_error(ActivityError::TimedOut)),
            }
        }
        .await,
    )
}

/// SendTaskSuccess's `output`, which must be JSON.
fn success_output(input: &Input) -> Result<Value, ApiError> {
    let output = input.required("output")?;
    if output.len() > MAX_OUTPUT {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'output' failed to satisfy constraint: Member must have length less than or equal to {MAX_OUTPUT}"
        )));
    }
    serde_json::from_str(output)
        .map_err(|e| ApiError::new("InvalidOutput", format!("Invalid Output: '{e}'")))
}

async fn send_task_success(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let token = task_token(input)?;
    let output = success_output(input)?;
    api.activities
        .complete(token, Ok(output))
        .await
        .map_err(api_error)?;
    Ok(json!({}))
}

/// SendTaskFailure's `error` and `cause`.
fn failure_error(input: &Input) -> Result<StatesError, ApiError> {
    let error = input.str("error")?.unwrap_or_default();
    let cause = input.str("cause")?.unwrap_or_default();
    if error.chars().count() > 256 || cause.chars().count() > 32_768 {
        return Err(ApiError::validation(
            "1 validation error detected: error must be at most 256 characters and cause at most 32768",
        ));
    }
    Ok(StatesError::new(error, cause))
}

async fn send_task_failure(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let token = task_token(input)?;
    let error = failure_error(input)?;
    api.activities
        .complete(token, Err(error))
        .await
        .map_err(api_error)?;
    Ok(json!({}))
}

async fn send_task_heartbeat(api: &ActivityApi, input: &Input) -> Result<Value, ApiError> {
    let token = task_token(input)?;
    api.activities.heartbeat(token).await.map_err(api_error)?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_arns_are_checked() {
        assert_eq!(
            activity_of("arn:aws:states:us-east-1:123456789012:activity:a").unwrap(),
            "a"
        );
        assert_eq!(activity_of("nope").unwrap_err().code, "InvalidArn");
        assert_eq!(
            activity_of("arn:aws:states:local:000000000000:stateMachine:a")
                .unwrap_err()
                .code,
            "InvalidArn"
        );
    }

    #[test]
    fn activity_errors_answer_as_aws() {
        assert_eq!(
            api_error(ActivityError::NoActivity("x".into())).code,
            "ActivityDoesNotExist"
        );
        assert_eq!(api_error(ActivityError::TimedOut).code, "TaskTimedOut");
        assert_eq!(
            api_error(ActivityError::InvalidToken("Invalid token")).code,
            "InvalidToken"
        );
        assert_eq!(api_error(ActivityError::NoBroker).status, 500);
    }
}
