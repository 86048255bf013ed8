"""A `.waitForTaskToken` client in Python (boto3), for tests/api_callbacks.rs.

Usage: callback_client.py ENDPOINT MACHINE_ARN ITEMS REJECT STALL BEAT
Starts an execution of MACHINE_ARN over ITEMS items `{"i": n}` whose Map Task waits for its
token, reads each task's token from GetExecutionHistory (the TaskScheduled `parameters`,
`{"i": n, "token": ...}`, or its `Payload` for lambda:invoke) and answers it: SendTaskSuccess `{"i": n, "square": n*n}`, but
SendTaskFailure for item REJECT, nothing for the first token of item STALL (so it times out
with States.HeartbeatTimeout and its Retry hands out a new token), and heartbeats for longer
than HeartbeatSeconds for item BEAT. Also answers one token twice, a forged token, and the
stalled token once the new one is out. Prints one JSON object of what it saw.
"""

import json
import sys
import threading
import time

import boto3
import botocore.config
import botocore.exceptions

endpoint, machine, items, reject, stall, beat = sys.argv[1:7]
items, reject, stall, beat = int(items), int(reject), int(stall), int(beat)
sfn = boto3.client(
    "stepfunctions",
    endpoint_url=endpoint,
    config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=70),
)


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "no error"


def beat_then_answer(token, i):
    for _ in range(5):
        time.sleep(1)
        sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output=json.dumps({"i": i, "square": i * i}))


execution = sfn.start_execution(
    stateMachineArn=machine,
    name="callbacks",
    input=json.dumps({"items": [{"i": n} for n in range(items)]}),
)["executionArn"]

seen = set()
tokens = {}  # item -> tokens in the order they were handed out
report = {}
threads = []
deadline = time.time() + 120
while True:
    if time.time() > deadline:
        raise SystemExit(f"the execution did not end; tokens seen: { {k: len(v) for k, v in tokens.items()} }")
    status = sfn.describe_execution(executionArn=execution)["status"]
    if status != "RUNNING":
        break
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution)
    for page in pages:
        for event in page["events"]:
            if event["type"] != "TaskScheduled" or event["id"] in seen:
                continue
            seen.add(event["id"])
            params = json.loads(event["taskScheduledEventDetails"]["parameters"])
            params = params.get("Payload", params)  # lambda:invoke's
            i, token = params["i"], params["token"]
            tokens.setdefault(i, []).append(token)
            if i == stall and len(tokens[i]) == 1:
                continue  # left to time out
            if i == stall:
                # The new token is out: the stalled one is spent.
                report["stalled_success"] = error_code(
                    lambda: sfn.send_task_success(taskToken=tokens[i][0], output="{}")
                )
                report["stalled_heartbeat"] = error_code(
                    lambda: sfn.send_task_heartbeat(taskToken=tokens[i][0])
                )
            if i == reject:
                sfn.send_task_failure(taskToken=token, error="Callback.Rejected", cause="no")
            elif i == beat:
                t = threading.Thread(target=beat_then_answer, args=(token, i))
                t.start()
                threads.append(t)
            else:
                out = json.dumps({"i": i, "square": i * i})
                sfn.send_task_success(taskToken=token, output=out)
                if i == 0:
                    report["answered_again"] = error_code(
                        lambda: sfn.send_task_success(taskToken=token, output=out)
                    )
                    name, secret = token.split(".")
                    forged = name + "." + ("0" if secret[0] != "0" else "1") + secret[1:]
                    report["forged"] = error_code(
                        lambda: sfn.send_task_success(taskToken=forged, output="{}")
                    )
                    report["garbage"] = error_code(
                        lambda: sfn.send_task_heartbeat(taskToken="not-a-token")
                    )
    time.sleep(0.2)
for t in threads:
    t.join()
report["status"] = status
report["execution"] = execution
report["tokens"] = {str(k): len(v) for k, v in sorted(tokens.items())}
report["after_end"] = error_code(
    lambda: sfn.send_task_success(taskToken=tokens[0][0], output="{}")
)
print(json.dumps(report))
