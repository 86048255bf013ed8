"""boto3's StartSyncExecution and TestState against `mapfleet serve`, for tests/api_fleet.rs.

Usage: boto3_sync.py ENDPOINT EXPRESS_MACHINE_ARN
botocore sends both operations to host `sync-<endpoint host>` unless told not to: with
`inject_host_prefix=False` they reach the endpoint; without it, the call cannot connect.
Prints one JSON object of what it saw.
"""

import datetime
import json
import sys

import boto3
import botocore.config
import botocore.exceptions

endpoint, machine_arn = sys.argv[1:3]
retries = {"max_attempts": 1}
sfn = boto3.client(
    "stepfunctions",
    endpoint_url=endpoint,
    config=botocore.config.Config(retries=retries, inject_host_prefix=False),
)
seen = {}

out = sfn.start_sync_execution(stateMachineArn=machine_arn, input=json.dumps({"n": 7}))
seen["status"] = out["status"]
seen["output"] = json.loads(out["output"])
seen["stop_is_datetime"] = isinstance(out["stopDate"], datetime.datetime)
seen["billing"] = sorted(out["billingDetails"])

tested = sfn.test_state(
    definition=json.dumps({"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "Next": "After"}),
    input=json.dumps({"a": 1}),
    inspectionLevel="DEBUG",
)
seen["test_state"] = {k: tested[k] for k in ("status", "nextState", "output")}
seen["after_result_path"] = json.loads(tested["inspectionData"]["afterResultPath"])

prefixed = boto3.client(
    "stepfunctions",
    endpoint_url=endpoint,
    config=botocore.config.Config(retries=retries, connect_timeout=5),
)
try:
    prefixed.start_sync_execution(stateMachineArn=machine_arn)
    seen["prefixed"] = "no error"
except botocore.exceptions.EndpointConnectionError as e:
    seen["prefixed"] = str(e)

print(json.dumps(seen))
