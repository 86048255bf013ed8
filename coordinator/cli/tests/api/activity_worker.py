"""An activity worker in Python (boto3), for tests/api_activities.rs.

Usage: activity_worker.py ENDPOINT ACTIVITY_ARN ITEMS STALL BEAT
Takes tasks with GetActivityTask and answers each `{"i": n}` with `{"i": n, "square": n*n}`,
until ITEMS distinct items are done. The first task of item STALL is left alone: no heartbeat,
no answer, so its state times out with States.HeartbeatTimeout and its Retry hands it out
again. Item BEAT sends heartbeats for longer than the HeartbeatSeconds before it answers. At
the end it answers the stalled task's token and one answered twice, which must both be
TaskTimedOut. Prints one JSON object of what it saw; any unexpected exception fails it.
"""

import json
import sys
import time

import boto3
import botocore.config
import botocore.exceptions

endpoint, activity_arn, items, stall, beat = sys.argv[1:6]
items, stall, beat = int(items), int(stall), int(beat)
sfn = boto3.client(
    "stepfunctions",
    endpoint_url=endpoint,
    # GetActivityTask holds the request for up to a minute (AWS's advice: 65 s or more).
    config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=70),
)


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "no error"


done = {}
handed = {}
stalled_token = None
answered_token = None
empty_polls = 0
deadline = time.time() + 240
while len(done) < items:
    if time.time() > deadline:
        raise SystemExit(f"only {len(done)} of {items} items done: {sorted(done)}")
    task = sfn.get_activity_task(activityArn=activity_arn, workerName="py-worker")
    token = task.get("taskToken")
    if not token:
        empty_polls += 1
        continue
    item = json.loads(task["input"])
    i = item["i"]
    handed[i] = handed.get(i, 0) + 1
    if i == stall and stalled_token is None:
        stalled_token = token
        continue
    if i == beat:
        for _ in range(4):
            time.sleep(0.8)
            sfn.send_task_heartbeat(taskToken=token)
    else:
        sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output=json.dumps({"i": i, "square": i * i}))
    done[i] = True
    answered_token = token

print(
    json.dumps(
        {
            "done": sorted(done),
            "handed": {str(k): v for k, v in sorted(handed.items())},
            "stalled_success": error_code(
                lambda: sfn.send_task_success(taskToken=stalled_token, output="{}")
            ),
            "stalled_heartbeat": error_code(
                lambda: sfn.send_task_heartbeat(taskToken=stalled_token)
            ),
            "answered_again": error_code(
                lambda: sfn.send_task_success(taskToken=answered_token, output="{}")
            ),
            "empty_polls": empty_polls,
        }
    )
)
