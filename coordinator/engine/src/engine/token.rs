//! Task tokens of `.waitForTaskToken` Tasks (`$$.Task.Token`).
//!
//! A token is the hex of the step it answers (execution, cursor, seq, attempt as a JSON
//! array), a dot, and a 128-bit secret: the format of the fleet's activity tokens, so one
//! decoder and one store of secrets serve both. The engine draws no randomness of its own,
//! so the secret is a keyed hash of the step's name under a [`TokenKey`] that the driver
//! draws from the OS when it starts: unguessable without the key, and the same when a
//! batch is replayed by the same process.

use sha2::{Digest, Sha256};

/// The resource suffix of a Task that waits for its token to be answered.
pub const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";

/// The integration a `.waitForTaskToken` Task runs (the resource without the suffix), or
/// `None` for any other resource.
pub fn callback_base(resource: &str) -> Option<&str> {
    resource
        .strip_suffix(WAIT_FOR_TASK_TOKEN)
        .filter(|base| !base.is_empty())
}

/// The Lambda integration's resource.
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// What a Task's step runs: the resource a worker serves and its input. A
/// `.waitForTaskToken` Task runs its integration (the resource without the suffix);
/// `lambda:invoke` with a `FunctionName` runs the mapfleet task of that function's name
/// (`NAME`, `arn:aws:lambda:R:A:function:NAME[:QUALIFIER]` or `arn:mapfleet:task:::NAME`)
/// on its `Payload` (`{}` without one). The third member says the result is a Lambda
/// response (`{"Payload": ..., "StatusCode": 200, ...}`, see [`lambda_response`]).
pub fn step_of(resource: &str, effective: &serde_json::Value) -> (String, serde_json::Value, bool) {
    let base = callback_base(resource).unwrap_or(resource);
    if base == LAMBDA_INVOKE
        && let Some(function) = effective.get("FunctionName").and_then(|f| f.as_str())
        && let Some(task) = function_task(function)
    {
        let payload = effective
            .get("Payload")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        return (task, payload, true);
    }
    (base.to_string(), effective.clone(), false)
}

/// Whether the Task runs a Lambda function's task ([`step_of`]'s third member), without
/// building the step.
pub fn runs_function(resource: &str, effective: &serde_json::Value) -> bool {
    callback_base(resource).unwrap_or(resource) == LAMBDA_INVOKE
        && effective
            .get("FunctionName")
            .and_then(|f| f.as_str())
            .and_then(function_task)
            .is_some()
}

/// The mapfleet task a Lambda `FunctionName` names.
fn function_task(function: &str) -> Option<String> {
    if let Some(name) = function.strip_prefix("arn:mapfleet:task:::") {
        return (!name.is_empty()).then(|| function.to_string());
    }
    let name = match function.split_once(":function:") {
        Some((_, rest)) => rest,
        None => function,
    };
    let name = name.split(':').next().unwrap_or_default();
    (!name.is_empty()).then(|| format!("arn:mapfleet:task:::{name}"))
}

/// A task's output as `lambda:invoke` returns it.
pub fn lambda_response(payload: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "StatusCode": 200
    })
}

/// The key task tokens' secrets are derived under. Its `Debug` shows nothing of it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// A key from 32 bytes the caller drew from the OS (the all-zero default is for tests).
    pub fn new(bytes: [u8; 32]) -> TokenKey {
        TokenKey(bytes)
    }

    /// The key as 64 hex digits, for a driver that keeps it (embedded `serve`'s store).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key [`TokenKey::to_hex`] wrote.
    pub fn from_hex(text: &str) -> Option<TokenKey> {
        unhex(text.trim())?.try_into().ok().map(TokenKey)
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// The step a token answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStep {
    pub execution: String,
    pub cursor: String,
    pub seq: u64,
    pub attempt: u32,
}

/// A token decoded: its step and the secret it carries (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedToken {
    pub step: TokenStep,
    pub secret: String,
}

/// The token of `step` under `key`.
pub fn mint(key: &TokenKey, step: &TokenStep) -> String {
    let name = step_name(step);
    format!("{}.{}", hex(&name), secret(key, &name))
}

/// The token text of `step` with a secret of the caller's (an activity task's, drawn from
/// the OS): the same format [`mint`] writes and [`decode`] reads.
pub fn encode(step: &TokenStep, secret: &str) -> String {
    format!("{}.{secret}", hex(&step_name(step)))
}

/// The secret [`mint`] puts in `step`'s token.
pub fn expected_secret(key: &TokenKey, step: &TokenStep) -> String {
    secret(key, &step_name(step))
}

fn step_name(step: &TokenStep) -> Vec<u8> {
    serde_json::to_vec(&(&step.execution, &step.cursor, step.seq, step.attempt))
        .expect("a step name serializes")
}

fn secret(key: &TokenKey, name: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"mapfleet task token\0");
    h.update(key.0);
    h.update(name);
    hex(&h.finalize()[..16])
}

/// Reads a token's step and secret; `None` for text that is not a token.
pub fn decode(text: &str) -> Option<DecodedToken> {
    let (name, secret) = text.split_once('.')?;
    let bytes = unhex(name)?;
    let (execution, cursor, seq, attempt): (String, String, u64, u32) =
        serde_json::from_slice(&bytes).ok()?;
    if secret.len() != 32 || unhex(secret).is_none() {
        return None;
    }
    Some(DecodedToken {
        step: TokenStep {
            execution,
            cursor,
            seq,
            attempt,
        },
        secret: secret.to_string(),
    })
}

/// Equal, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Lower-case hex of `bytes`, as tokens and their secrets are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> TokenStep {
        TokenStep {
            execution: "arn:aws:states:local:000000000000:execution:m:e".into(),
            cursor: "/3".into(),
            seq: 7,
            attempt: 2,
        }
    }

    #[test]
    fn tokens_round_trip_and_depend_on_the_key() {
        let a = mint(&TokenKey::new([1; 32]), &step());
        let b = mint(&TokenKey::new([2; 32]), &step());
        assert_ne!(a, b, "another key, another secret");
        assert!(!a.contains("execution:m:e"), "opaque: {a}");
        let d = decode(&a).unwrap();
        assert_eq!(d.step, step());
        assert!(same_secret(
            &d.secret,
            &expected_secret(&TokenKey::new([1; 32]), &step())
        ));
        assert!(!same_secret(
            &d.secret,
            &expected_secret(&TokenKey::new([2; 32]), &step())
        ));
        assert_eq!(format!("{:?}", TokenKey::new([9; 32])), "TokenKey(..)");
        let key = TokenKey::new([0xab; 32]);
        assert_eq!(TokenKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(TokenKey::from_hex("abcd"), None);
    }

    #[test]
    fn malformed_tokens_do_not_decode() {
        let good = mint(&TokenKey::default(), &step());
        let (name, _) = good.split_once('.').unwrap();
        for bad in [
            "",
            "abc",
            "zz.00",
            &format!("{name}.short"),
            &format!("{name}.{}", "g".repeat(32)),
            &format!("{}.{}", hex(b"[1,2]"), "0".repeat(32)),
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lambda_invoke_runs_the_task_its_function_names() {
        use serde_json::json;
        for function in [
            "notify",
            "notify:live",
            "arn:aws:lambda:us-east-1:123456789012:function:notify",
            "arn:aws:lambda:us-east-1:123456789012:function:notify:3",
            "arn:mapfleet:task:::notify",
        ] {
            let input = json!({"FunctionName": function, "Payload": {"token": "t"}});
            assert_eq!(
                step_of("arn:aws:states:::lambda:invoke.waitForTaskToken", &input),
                (
                    "arn:mapfleet:task:::notify".to_string(),
                    json!({"token": "t"}),
                    true
                ),
                "{function}"
            );
        }
        let bare = json!({"FunctionName": "notify"});
        assert_eq!(step_of(LAMBDA_INVOKE, &bare).1, json!({}));
        // Without a FunctionName, or another integration: the resource as it is.
        let other = json!({"a": 1});
        assert_eq!(
            step_of(LAMBDA_INVOKE, &other),
            (LAMBDA_INVOKE.to_string(), other.clone(), false)
        );
        assert_eq!(
            step_of("arn:mapfleet:task:::echo.waitForTaskToken", &other),
            ("arn:mapfleet:task:::echo".to_string(), other, false)
        );
    }

    #[test]
    fn only_wait_for_task_token_resources_are_callbacks() {
        assert_eq!(
            callback_base("arn:aws:states:::lambda:invoke.waitForTaskToken"),
            Some("arn:aws:states:::lambda:invoke")
        );
        assert_eq!(
            callback_base("arn:mapfleet:task:::echo.waitForTaskToken"),
            Some("arn:mapfleet:task:::echo")
        );
        assert_eq!(callback_base("arn:mapfleet:task:::echo"), None);
        assert_eq!(callback_base(".waitForTaskToken"), None);
    }
}
