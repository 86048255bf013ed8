//! TagResource, UntagResource and ListTagsForResource on state machines, and the `tags` of
//! CreateStateMachine. (Activities, the other taggable resource, are tagged in
//! [`super::activities`], which takes these calls for activity ARNs first.)

use serde_json::{Value, json};

use super::machine_for;
use crate::api::backend::Store;
use crate::api::store::{TagRefused, machine_name};
use crate::api::wire::{ApiError, Input};

/// Step Functions' limit of tags per resource.
pub const MAX_TAGS: usize = 50;

/// The state machine a tagging call is about. A version or alias ARN, an activity or an
/// unknown machine is ResourceNotFound, as AWS answers.
async fn tagged_machine(store: &Store, input: &Input) -> Result<String, ApiError> {
    let arn = input.required_len("resourceArn", 256)?;
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid_arn(arn));
    }
    if arn.contains(":activity:") {
        return Err(ApiError::resource_missing(arn));
    }
    if let Some((_, rest)) = arn.split_once(":stateMachine:")
        && rest.contains(':')
    {
        return Err(ApiError::resource_missing(arn));
    }
    let name = machine_name(arn)?.to_string();
    machine_for(store, arn).await.map_err(|e| match e.code {
        "StateMachineDoesNotExist" => ApiError::resource_missing(arn),
        _ => e,
    })?;
    Ok(name)
}

/// The `tags` member, checked as the model constrains it (an absent one: none).
pub(super) fn request_tags(input: &Input) -> Result<Vec<(String, String)>, ApiError> {
    let list = match input.0.get("tags") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must be a list",
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, tag) in list.iter().enumerate() {
        let key = tag["key"].as_str().unwrap_or_default();
        let value = match &tag["value"] {
            Value::Null => "",
            Value::String(v) => v,
            _ => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value at 'tags.{}.member.value' failed to satisfy constraint: Member must be a string",
                    i + 1
                )));
            }
        };
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'tags.{}.member.key' failed to satisfy constraint: Member must have length between 1 and 128",
                i + 1
            )));
        }
        if value.chars().count() > 256 {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'tags.{}.member.value' failed to satisfy constraint: Member must have length less than or equal to 256",
                i + 1
            )));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

pub(super) fn too_many(arn: &str) -> ApiError {
    ApiError {
        extra: Some(("resourceName", arn.to_string())),
        ..ApiError::new(
            "TooManyTags",
            format!("Too many tags: a resource may have at most {MAX_TAGS}: '{arn}'"),
        )
    }
}

/// Tags a machine just created (CreateStateMachine's `tags`).
pub(super) async fn tag_created(
    store: &Store,
    name: &str,
    arn: &str,
    tags: &[(String, String)],
) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Ok(());
    }
    match store.tag(name, tags, MAX_TAGS).await? {
        Ok(()) => Ok(()),
        Err(TagRefused::NoMachine) => Err(ApiError::machine_missing(arn)),
        Err(TagRefused::TooMany) => Err(too_many(arn)),
    }
}

/// Refuses more than [`MAX_TAGS`] in one request, before anything is stored.
pub(super) fn check_count(tags: &[(String, String)], arn: &str) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(too_many(arn));
    }
    Ok(())
}

pub(super) async fn tag_resource(store: &Store, input: Input) -> Result<Value, ApiError> {
    let name = tagged_machine(store, &input).await?;
    let arn = input.required("resourceArn")?;
    if input.0.get("tags").is_none_or(Value::is_null) {
        return Err(ApiError::missing("tags"));
    }
    let tags = request_tags(&input)?;
    check_count(&tags, arn)?;
    match store.tag(&name, &tags, MAX_TAGS).await? {
        Ok(()) => Ok(json!({})),
        Err(TagRefused::NoMachine) => Err(ApiError::resource_missing(arn)),
        Err(TagRefused::TooMany) => Err(too_many(arn)),
    }
}

pub(super) async fn untag_resource(store: &Store, input: Input) -> Result<Value, ApiError> {
    let name = tagged_machine(store, &input).await?;
    let keys = request_tag_keys(&input)?;
    store.untag(&name, &keys).await?;
    Ok(json!({}))
}

/// UntagResource's `tagKeys`, checked as the model constrains them.
pub(super) fn request_tag_keys(input: &Input) -> Result<Vec<String>, ApiError> {
    let keys = match input.0.get("tagKeys") {
        Some(Value::Array(keys)) => keys,
        None | Some(Value::Null) => return Err(ApiError::missing("tagKeys")),
        Some(_) => {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must be a list",
            ));
        }
    };
    let mut out = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        match k.as_str() {
            Some(k) if !k.is_empty() && k.chars().count() <= 128 => out.push(k.to_string()),
            _ => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value at 'tagKeys.{}.member' failed to satisfy constraint: Member must have length between 1 and 128",
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

pub(super) async fn list_tags_for_resource(store: &Store, input: Input) -> Result<Value, ApiError> {
    let name = tagged_machine(store, &input).await?;
    let tags: Vec<Value> = store
        .tags(&name)
        .await?
        .into_iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    Ok(json!({ "tags": tags }))
}
