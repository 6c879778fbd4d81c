#!/usr/bin/env python3
"""Cross-checks tcvnc's TC3 signing with the official Tencent Cloud Python SDK.

client:   the SDK's CvmClient calls an endpoint (tcvnc's simulator) and prints one JSON
          line: {"ok": true, "url": ...} or {"ok": false, "code": ...}.
describe: the SDK's DescribeInstances with Filters (--filter NAME=VALUE[,VALUE]...),
          Offset and Limit against an endpoint; prints one JSON line:
          {"ok": true, "total": N, "instances": [{id, name, state, zone, tags}]} or
          {"ok": false, "code": ...}.
verifier: an HTTP server that checks each request's signature with the SDK's own
          Sign.sign_tc3 and answers like the API; prints one JSON line per request.
"""
import argparse
import hashlib
import http.server
import json
import sys
import time


def client(args):
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.cvm.v20170312 import cvm_client, models

    endpoint = args.api.split("://", 1)[1]
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http"))
    c = cvm_client.CvmClient(credential.Credential(args.secret_id, args.secret_key), args.region, profile)
    req = models.DescribeInstanceVncUrlRequest()
    req.InstanceId = args.instance
    try:
        resp = c.DescribeInstanceVncUrl(req)
        print(json.dumps({"ok": True, "url": resp.InstanceVncUrl, "request_id": resp.RequestId}))
    except TencentCloudSDKException as e:
        print(json.dumps({"ok": False, "code": e.get_code(), "message": e.get_message()}))


def describe(args):
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.cvm.v20170312 import cvm_client, models

    endpoint = args.api.split("://", 1)[1]
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http"))
    c = cvm_client.CvmClient(credential.Credential(args.secret_id, args.secret_key), args.region, profile)
    req = models.DescribeInstancesRequest()
    req.Offset = args.offset
    req.Limit = args.limit
    if args.filter:
        req.Filters = []
        for f in args.filter:
            name, values = f.split("=", 1)
            flt = models.Filter()
            flt.Name = name
            flt.Values = values.split(",")
            req.Filters.append(flt)
    try:
        resp = c.DescribeInstances(req)
    except TencentCloudSDKException as e:
        print(json.dumps({"ok": False, "code": e.get_code(), "message": e.get_message()}))
        return
    instances = [
        {
            "id": i.InstanceId,
            "name": i.InstanceName,
            "state": i.InstanceState,
            "zone": i.Placement.Zone if i.Placement else None,
            "tags": {t.Key: t.Value for t in (i.Tags or [])},
        }
        for i in (resp.InstanceSet or [])
    ]
    print(json.dumps({"ok": True, "total": resp.TotalCount, "instances": instances}))


def verifier(args):
    from tencentcloud.common.sign import Sign

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, body):
            data = json.dumps({"Response": body}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            auth = self.headers.get("Authorization", "")
            verdict = {"path": self.path}
            try:
                algo, rest = auth.split(" ", 1)
                parts = dict(p.strip().split("=", 1) for p in rest.split(","))
                _sid, date, service, term = parts["Credential"].split("/")
                signed = parts["SignedHeaders"].split(";")
                ts = int(self.headers["X-TC-Timestamp"])
                canonical_headers = "".join(
                    "%s:%s\n" % (h, self.headers[h].strip().lower() if h == "x-tc-action" else self.headers[h].strip())
                    for h in signed
                )
                canonical = "\n".join([
                    "POST", "/", "", canonical_headers, parts["SignedHeaders"],
                    hashlib.sha256(payload).hexdigest(),
                ])
                sts = "\n".join([
                    "TC3-HMAC-SHA256", str(ts), "%s/%s/tc3_request" % (date, service),
                    hashlib.sha256(canonical.encode()).hexdigest(),
                ])
                want_date = time.strftime("%Y-%m-%d", time.gmtime(ts))
                expected = Sign.sign_tc3(args.secret_key, date, service, sts)
                ok = (algo == "TC3-HMAC-SHA256" and term == "tc3_request" and date == want_date
                      and "content-type" in signed and "host" in signed
                      and expected == parts["Signature"])
                verdict.update({"ok": ok, "signed": signed, "service": service,
                                "content_type": self.headers.get("Content-Type"), "host": self.headers.get("Host")})
            except Exception as e:  # noqa: BLE001 - any malformed request is a failed verification
                verdict.update({"ok": False, "error": repr(e)})
            print(json.dumps(verdict), flush=True)
            if verdict.get("ok"):
                self.answer({"InstanceVncUrl": "wss%3A%2F%2F127.0.0.1%3A1%2Fvnc%3Fs%3DdmVyaWZpZWQ%3D", "RequestId": "verifier"})
            else:
                self.answer({"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "verifier rejected"}, "RequestId": "verifier"})

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"listening": "http://127.0.0.1:%d" % server.server_address[1]}), flush=True)
    server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("--api", required=True)
    c.add_argument("--secret-id", required=True)
    c.add_argument("--secret-key", required=True)
    c.add_argument("--region", default="ap-guangzhou")
    c.add_argument("--instance", default="ins-demo0001")
    d = sub.add_parser("describe")
    d.add_argument("--api", required=True)
    d.add_argument("--secret-id", required=True)
    d.add_argument("--secret-key", required=True)
    d.add_argument("--region", default="ap-guangzhou")
    d.add_argument("--offset", type=int, default=0)
    d.add_argument("--limit", type=int, default=20)
    d.add_argument("--filter", action="append")
    v = sub.add_parser("verifier")
    v.add_argument("--secret-key", required=True)
    args = p.parse_args()
    {"client": client, "describe": describe, "verifier": verifier}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
