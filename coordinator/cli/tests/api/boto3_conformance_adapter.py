#!/usr/bin/env python3
"""Adapter between run_conformance.py and `mapfleet serve`, through boto3.

The twin of `tests/conformance/mapfleet-adapter` (which runs the `mapfleet` CLI): it reads one
request {"definition", "input", "state_machine_type"} on stdin and runs it the way a Step
Functions user would, with the real boto3 client against the API: CreateStateMachine,
StartExecution, DescribeExecution until the execution ends, GetExecutionHistory (every page),
DeleteStateMachine. It prints one line {"status", "output", "error", "cause", "events"}.

A definition or input the API rejects (InvalidDefinition, InvalidExecutionInput, ...) is
reported as REJECTED_AT_CREATE, as the CLI adapter does for its exit code 2.

Environment: MAPFLEET_API_ENDPOINT (the server's URL), and the usual AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION for the signature.
"""

import json
import os
import sys
import time
import uuid

import boto3
import botocore.config
import botocore.exceptions

REJECTED = {
    "InvalidDefinition",
    "InvalidExecutionInput",
    "ValidationException",
    "InvalidName",
}


def main():
    req = json.load(sys.stdin)
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=os.environ["MAPFLEET_API_ENDPOINT"],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    name = "conformance-" + uuid.uuid4().hex[:16]
    try:
        machine = sfn.create_state_machine(
            name=name,
            definition=req["definition"],
            roleArn="arn:aws:iam::123456789012:role/conformance",
            type=req.get("state_machine_type") or "STANDARD",
        )["stateMachineArn"]
    except botocore.exceptions.ClientError as e:
        return rejected(e)
    try:
        run(sfn, machine, req.get("input") or "{}")
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)


def rejected(e):
    err = e.response["Error"]
    if err.get("Code") not in REJECTED:
        raise e
    print(json.dumps({"status": "REJECTED_AT_CREATE", "error": err["Code"], "cause": err.get("Message", "")}))


def run(sfn, machine, payload):
    try:
        arn = sfn.start_execution(stateMachineArn=machine, input=payload)["executionArn"]
    except botocore.exceptions.ClientError as e:
        return rejected(e)
    deadline = time.monotonic() + 100
    pause = 0.02
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            print(json.dumps({"status": "HARNESS_ERROR", "cause": f"{arn} still RUNNING after 100 s"}))
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    out = {"status": described["status"], "events": [e for page in pages for e in page["events"]]}
    if described.get("output") is not None:
        out["output"] = json.loads(described["output"])
    for k in ("error", "cause"):
        if described.get(k) is not None:
            out[k] = described[k]
    print(json.dumps(out, default=str))


main()
