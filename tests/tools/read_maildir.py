#!/usr/bin/env python3
"""Prints the messages an aiosmtpd Mailbox handler stored:
one JSON object per message with the decoded headers and text body, so the Rust test needs no
MIME parser. Usage: read_maildir.py MAILDIR"""
import json, mailbox, sys
from email import policy
from email.parser import BytesParser
out = []
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in sorted(md.keys()):
    raw = md.get_bytes(key)
    m = BytesParser(policy=policy.default).parsebytes(raw)
    body = m.get_body(preferencelist=("plain",))
    out.append({"subject": m["subject"], "from": m["from"], "to": m["to"],
                "messageId": m["message-id"], "date": m["date"],
                "contentType": m.get_content_type(), "charset": body.get_content_charset() if body else None,
                "transferEncoding": body["content-transfer-encoding"] if body else None,
                "mailFrom": m["X-MailFrom"], "rcptTo": m["X-RcptTo"],
                "body": body.get_content() if body else None})
json.dump(out, sys.stdout, ensure_ascii=False, indent=1); print()
