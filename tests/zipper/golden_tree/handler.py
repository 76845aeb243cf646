"""Example Lambda handler used as a golden fixture: do not edit (the golden sha256 depends on it)."""

import json
import os

GREETING = os.environ.get("GREETING", "hello")


def handler(event, context):
    """Echo the event back with a greeting, like a thousand other handlers."""
    body = {
        "greeting": GREETING,
        "event": event,
        "request_id": getattr(context, "aws_request_id", None),
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, sort_keys=True),
    }
