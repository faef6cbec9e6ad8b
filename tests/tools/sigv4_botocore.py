#!/usr/bin/env python3
"""The Authorization header botocore (the AWS SDK's reference SigV4 signer) computes.

Usage: sigv4_botocore.py  < request.json
request.json: {"method", "url" (no query), "query": [[name, value], ...], "headers": {...},
               "body" (text), "region", "service", "access_key", "secret_key",
               "amz_date" (YYYYMMDDTHHMMSSZ)}
Prints the header's value. The query goes in as parameters, so botocore encodes it itself."""
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

r = json.load(sys.stdin)
req = AWSRequest(method=r["method"], url=r["url"], params=[tuple(p) for p in r["query"]],
                 headers=r["headers"], data=r["body"].encode())
req.context["timestamp"] = r["amz_date"]
auth = SigV4Auth(Credentials(r["access_key"], r["secret_key"]), r["service"], r["region"])
# add_auth's steps at the given time (add_auth itself reads the clock).
canonical = auth.canonical_request(req)
signature = auth.signature(auth.string_to_sign(req, canonical), req)
scope = auth.scope(req)
print(f"AWS4-HMAC-SHA256 Credential={scope}, "
      f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(req))}, Signature={signature}")
