"""boto3 against `mapfleet serve`, for tests/api_fleet.rs.

Usage: boto3_client.py ENDPOINT MACHINE_ARN EXECUTION_ARN
Credentials and region come from the environment (AWS_ACCESS_KEY_ID, ...). Prints one JSON
object of what it saw; the Rust test asserts on it. Any unexpected exception fails the script.
"""

import datetime
import json
import sys

import boto3
import botocore.config

endpoint, machine_arn, execution_arn = sys.argv[1:4]
sfn = boto3.client(
    "stepfunctions",
    endpoint_url=endpoint,
    config=botocore.config.Config(retries={"max_attempts": 1}),
)
seen = {}

described = sfn.describe_execution(executionArn=execution_arn)
seen["status"] = described["status"]
seen["start_is_datetime"] = isinstance(described["startDate"], datetime.datetime)
seen["output"] = json.loads(described["output"])

# The paginator follows nextToken; a manual loop checks the tokens by hand.
pages = sfn.get_paginator("get_execution_history").paginate(
    executionArn=execution_arn, PaginationConfig={"PageSize": 2}
)
seen["paginated_ids"] = [e["id"] for page in pages for e in page["events"]]
ids, token, calls = [], None, 0
while True:
    kwargs = {"executionArn": execution_arn, "maxResults": 3, "reverseOrder": True}
    if token:
        kwargs["nextToken"] = token
    page = sfn.get_execution_history(**kwargs)
    calls += 1
    ids += [e["id"] for e in page["events"]]
    token = page.get("nextToken")
    if not token:
        break
seen["reverse_ids"] = ids
seen["reverse_calls"] = calls
first = sfn.get_execution_history(executionArn=execution_arn, includeExecutionData=False)
seen["started_details"] = first["events"][0].get("executionStartedEventDetails", {})

listed = sfn.list_executions(stateMachineArn=machine_arn, statusFilter="SUCCEEDED")
seen["succeeded"] = [e["name"] for e in listed["executions"]]
seen["machines"] = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]

try:
    sfn.describe_execution(executionArn=execution_arn + "-missing")
    seen["missing"] = "no error"
except sfn.exceptions.ExecutionDoesNotExist as e:
    seen["missing"] = e.response["Error"]["Code"]
try:
    sfn.get_execution_history(executionArn=execution_arn, nextToken="not-a-token")
    seen["bad_token"] = "no error"
except sfn.exceptions.InvalidToken as e:
    seen["bad_token"] = e.response["Error"]["Code"]
try:
    sfn.start_execution(stateMachineArn=machine_arn, input="not json")
    seen["bad_input"] = "no error"
except sfn.exceptions.InvalidExecutionInput as e:
    seen["bad_input"] = e.response["Error"]["Message"]

print(json.dumps(seen))
