//! AWS JSON 1.0 as Step Functions speaks it: the errors (`__type` in the body and
//! `X-Amzn-ErrorType`, HTTP 400), timestamps as epoch seconds, request members read with
//! botocore's names, and opaque pagination tokens.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// awsJson 1.0's content type.
pub const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.0";
/// The `X-Amz-Target` prefix of Step Functions' operations.
pub const TARGET_PREFIX: &str = "AWSStepFunctions.";
/// The signing name Step Functions' clients put in their credential scope.
pub const SIGNING_NAME: &str = "states";
/// `maxResults` when absent or 0.
pub const DEFAULT_PAGE: usize = 100;
/// The largest `maxResults`.
pub const MAX_PAGE: usize = 1000;

/// A refused or failed call, as AWS answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The exception name (`__type`, `X-Amzn-ErrorType`).
    pub code: &'static str,
    pub message: String,
    /// 400 for every modeled exception; 500 for mapfleet's own failures.
    pub status: u16,
    /// The member some exceptions add to `message`: ResourceNotFound's `resourceName`,
    /// ValidationException's `reason`.
    pub extra: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status: 400,
            extra: None,
        }
    }

    /// A failure of mapfleet itself (Redis unreachable and the like).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            code: "InternalFailure",
            message: message.into(),
            status: 500,
            extra: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    pub fn invalid_arn(arn: &str) -> Self {
        Self::new(
            "InvalidArn",
            format!("Invalid Arn: 'Invalid ARN prefix: {arn}'"),
        )
    }

    pub fn machine_missing(arn: &str) -> Self {
        Self::new(
            "StateMachineDoesNotExist",
            format!("State Machine Does Not Exist: '{arn}'"),
        )
    }

    pub fn execution_missing(arn: &str) -> Self {
        Self::new(
            "ExecutionDoesNotExist",
            format!("Execution Does Not Exist: '{arn}'"),
        )
    }

    /// A required member left out.
    pub fn missing(name: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
        ))
    }

    /// An unknown resource (a map run, a resource to tag), as AWS words it.
    pub fn resource_missing(arn: &str) -> Self {
        ApiError {
            extra: Some(("resourceName", arn.to_string())),
            ..Self::new("ResourceNotFound", format!("Resource not found: '{arn}'"))
        }
    }

    /// A ValidationException with its `reason` (one of the model's ValidationExceptionReason).
    pub fn validation_because(reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            extra: Some(("reason", reason.to_string())),
            ..Self::validation(message)
        }
    }

    pub fn invalid_token() -> Self {
        Self::new("InvalidToken", "Invalid Token: 'Invalid token'")
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = serde_json::json!({ "__type": self.code, "message": self.message });
        if let Some((name, value)) = &self.extra {
            body[*name] = Value::String(value.clone());
        }
        body
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}

impl From<coordinator::fleet::client::ClientError> for ApiError {
    fn from(e: coordinator::fleet::client::ClientError) -> Self {
        use coordinator::fleet::client::ClientError;
        match e {
            ClientError::DoesNotExist(arn) => ApiError::execution_missing(&arn),
            ClientError::AlreadyExists(arn) => ApiError::new(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{arn}'"),
            ),
            ClientError::NotRedrivable(why) => ApiError::new("ExecutionNotRedrivable", why),
            other => ApiError::internal(shared::supervise::Chain(&other).to_string()),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::internal(format!("Redis: {e}"))
    }
}

/// Epoch seconds with milliseconds, as a JSON number.
pub fn epoch(t: &DateTime<Utc>) -> Value {
    epoch_ms(t.timestamp_millis())
}

/// Epoch milliseconds as epoch seconds (a JSON number).
pub fn epoch_ms(ms: i64) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A request's members.
pub struct Input(pub Map<String, Value>);

impl Input {
    /// The body as a JSON object (`SerializationException` otherwise).
    pub fn parse(body: &[u8]) -> Result<Input, ApiError> {
        let text = if body.is_empty() {
            b"{}" as &[u8]
        } else {
            body
        };
        match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(m)) => Ok(Input(m)),
            Ok(_) => Err(ApiError::new(
                "SerializationException",
                "the request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::new(
                "SerializationException",
                format!("the request body is not JSON: {e}"),
            )),
        }
    }

    /// An optional string member (a wrong type is a ValidationException).
    pub fn str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must be a string"
            ))),
        }
    }

    /// A required string member (`MissingRequiredParameter`-style ValidationException).
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// A required string member checked against its length limits.
    pub fn required_len(&self, name: &str, max: usize) -> Result<&str, ApiError> {
        let v = self.required(name)?;
        check_len(name, v, max)?;
        Ok(v)
    }

    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must be a boolean"
            ))),
        }
    }

    /// An optional non-negative integer member (ValidationException otherwise).
    pub fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at '{name}' failed to satisfy constraint: Member must have value greater than or equal to 0"
                ))
            }),
            Some(_) => Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must be a number"
            ))),
        }
    }

    /// An optional number member within `min..=max`.
    pub fn float(&self, name: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if (min..=max).contains(&f) => Ok(Some(f)),
                _ => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at '{name}' failed to satisfy constraint: Member must have value between {min} and {max}"
                ))),
            },
            Some(_) => Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must be a number"
            ))),
        }
    }

    /// `maxResults` (0 or absent: the default; at most `max`).
    pub fn max_results(&self, max: usize, default: usize) -> Result<usize, ApiError> {
        match self.0.get("maxResults") {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(0) => Ok(default),
                Some(n) if n as usize <= max => Ok(n as usize),
                _ => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {max}"
                ))),
            },
            Some(_) => Err(ApiError::validation(
                "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must be an integer",
            )),
        }
    }

    /// The decoded `nextToken`, if any (an unreadable one is InvalidToken).
    pub fn token(&self, kind: &str) -> Result<Option<String>, ApiError> {
        match self.str("nextToken")? {
            None => Ok(None),
            Some(t) if t.len() > 3096 => Err(ApiError::validation(
                "1 validation error detected: Value at 'nextToken' failed to satisfy constraint: Member must have length less than or equal to 3096",
            )),
            Some(t) => decode_token(kind, t).map(Some),
        }
    }
}

/// A member's length check in AWS's words.
pub fn check_len(name: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > max {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must have length between 1 and {max}"
        )));
    }
    Ok(())
}

/// An opaque pagination token: the kind of listing and the position after which the next
/// page starts, hex-encoded. The position is a key of the listing's order (not an offset), so
/// a token stays valid and points at the same place while items are added.
pub fn encode_token(kind: &str, position: &str) -> String {
    format!("{kind}|{position}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The position in a token made by [`encode_token`] for the same `kind`.
pub fn decode_token(kind: &str, token: &str) -> Result<String, ApiError> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(ApiError::invalid_token());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
    let text = bytes
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(ApiError::invalid_token)?;
    match text.split_once('|') {
        Some((k, position)) if k == kind => Ok(position.to_string()),
        _ => Err(ApiError::invalid_token()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_listings_and_garbage() {
        let t = encode_token("executions", "1700000000000|arn:x");
        assert_eq!(
            decode_token("executions", &t).unwrap(),
            "1700000000000|arn:x"
        );
        assert_eq!(
            decode_token("history", &t).unwrap_err().code,
            "InvalidToken"
        );
        assert_eq!(
            decode_token("history", "zz").unwrap_err().code,
            "InvalidToken"
        );
        assert_eq!(
            decode_token("history", "abc").unwrap_err().code,
            "InvalidToken"
        );
    }

    #[test]
    fn max_results_follows_aws_limits() {
        let i = Input::parse(br#"{"maxResults": 1001}"#).unwrap();
        let e = i.max_results(MAX_PAGE, DEFAULT_PAGE).unwrap_err();
        assert!(e.message.contains("less than or equal to 1000"), "{e}");
        let i = Input::parse(br#"{"maxResults": 0}"#).unwrap();
        assert_eq!(i.max_results(MAX_PAGE, DEFAULT_PAGE).unwrap(), 100);
        assert_eq!(Input::parse(b"").unwrap().0.len(), 0);
        assert_eq!(
            Input::parse(b"[1]").err().unwrap().code,
            "SerializationException"
        );
    }

    #[test]
    fn timestamps_are_epoch_seconds() {
        assert_eq!(epoch_ms(1_700_000_000_123).to_string(), "1700000000.123");
    }
}
