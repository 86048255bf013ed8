//! `notification-placeholder` (the workshop's NotificationPlaceholderFunction, state
//! PhotoDoesNotMeetRequirement): sends nothing, and returns
//! `{"messageToSend": {"title": errorInfo.Error, "message": <errorMessage in errorInfo.Cause>}}`.
//! Without `errorInfo`, both are empty. A cause that is not Lambda's JSON (e.g. a Step
//! Functions runtime error) is used as the message as it is, where the Node function would
//! have thrown.

use serde_json::{Value, json};

use crate::task::{Task, TaskFailure};

pub struct NotificationPlaceholder;

/// The message a notification would carry.
pub fn message_to_send(input: &Value) -> Value {
    let (mut title, mut message) = (String::new(), String::new());
    if let Some(info) = input.get("errorInfo").filter(|v| v.is_object()) {
        title = info
            .get("Error")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(cause) = info.get("Cause").and_then(Value::as_str) {
            message = match serde_json::from_str::<Value>(cause) {
                Ok(v) => v
                    .get("errorMessage")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                Err(_) => cause.to_owned(),
            };
        }
    }
    json!({ "messageToSend": { "title": title, "message": message } })
}

#[async_trait::async_trait]
impl Task for NotificationPlaceholder {
    fn name(&self) -> &'static str {
        "notification-placeholder"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        Ok(message_to_send(&input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_error_message_from_the_cause() {
        let input = json!({
            "userId": "johndoe",
            "errorInfo": {
                "Error": "PhotoDoesNotMeetRequirementError",
                "Cause": "{\"errorMessage\":\"Face is wearing sunglasses\",\"errorType\":\"PhotoDoesNotMeetRequirementError\",\"stackTrace\":[]}"
            }
        });
        assert_eq!(
            message_to_send(&input),
            json!({"messageToSend": {"title": "PhotoDoesNotMeetRequirementError", "message": "Face is wearing sunglasses"}})
        );
        assert_eq!(
            message_to_send(&json!({})),
            json!({"messageToSend": {"title": "", "message": ""}})
        );
        let odd = json!({"errorInfo": {"Error": "States.Timeout", "Cause": "timed out"}});
        assert_eq!(
            message_to_send(&odd)["messageToSend"]["message"],
            "timed out"
        );
    }
}
