#!/usr/bin/env python3
"""Independent verifier of fieldsync's signed service reports.

Written from docs/REPORT-FORMAT.md alone (no fieldsync code), with `cryptography` for Ed25519
and `rfc8785` for the JSON Canonicalization Scheme:

    verify_report.py report REPORT.json --trust TRUST_DIR   # an exported report
    verify_report.py vectors docs/report-vectors            # the published test vectors

Prints one JSON object. Exit 0: valid; 1: not valid, with the failure's `code` (the same codes
as `fieldsync verify`) and a `reason`; 2: unusable input (no trust data, bad arguments).
"""

import copy
import hashlib
import json
import sys
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

REPORT_FORMAT = "fieldsync/report/v1"
ACK_FORMAT = "fieldsync/acknowledgement/v1"
ATTESTATION_FORMAT = "fieldsync/device-attestation/v1"
COMPLAINT_FORMAT = "fieldsync/complaint/v1"
COMPLAINT_DOC_KIND = "fieldsync/complaint-document/v1"
PUBLIC_KEY_KIND = "fieldsync-ed25519-public-key"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Invalid(Exception):
    """A check failed: `code` names which (REPORT-FORMAT.md, "Verifying a report")."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def jcs(value):
    return rfc8785.dumps(value)


def key_id(public_key):
    return sha256_hex(public_key)[:32]


def bs58check(payload):
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def strict_json(text):
    """JSON with duplicate object keys refused (they would make the signed bytes ambiguous)."""

    def pairs(items):
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate object key")
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs)


def check_signature(public_key, signature_hex, message, code, what):
    try:
        signature = bytes.fromhex(signature_hex)
        if len(signature) != 64:
            raise ValueError("not 64 bytes")
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError) as e:
        raise Invalid(code, f"{what} does not verify ({e.__class__.__name__})") from None


def acknowledged_content(job):
    """The job without what is recorded after the customer signs."""
    job = copy.deepcopy(job)
    job.update(acknowledgement=None, completion=None, report=None, timeline=[], notes="")
    job["visit"]["check_out"] = None
    # Receipts (R28) are not the customer's to acknowledge; an emptied list is left out.
    kept = [a for a in job.get("attachments", []) if a.get("kind") != "receipt"]
    if kept:
        job["attachments"] = kept
    else:
        job.pop("attachments", None)
    # Approved travel expense claims (R28) are decided after the customer signs.
    job.pop("expenses", None)
    return job


def report_content(job):
    job = copy.deepcopy(job)
    job.update(acknowledgement=None, completion=None, report=None)
    return job


def ack_statement(job_id, branch_id, ack):
    return jcs({
        "format": ACK_FORMAT, "job_id": job_id, "branch_id": branch_id,
        "device_id": ack["device_id"], "job_digest": ack["job_digest"], "heads": ack["heads"],
        "signer_name": ack["signer_name"], "signed_at": ack["signed_at"], "survey": ack["survey"],
        "signature_mark_digest": sha256_hex(jcs(ack["signature"])),
    })


def report_id(job_id, content_digest):
    return sha256_hex(f"{REPORT_FORMAT}\n{job_id}\n{content_digest}".encode())[:32]


def load_trust(directory):
    """branches/<branch-id>.pub and devices.json → ({key id: (branch, key)}, {device id: record})."""
    directory, branches = Path(directory), {}
    for path in sorted((directory / "branches").glob("*.pub")):
        file = json.loads(path.read_text(encoding="utf-8"))
        public_key = bytes.fromhex(file["public_key"].strip())
        if file.get("kind") != PUBLIC_KEY_KIND or len(public_key) != 32:
            raise ValueError(f"{path}: not a fieldsync public key file")
        if key_id(public_key) != file["key_id"]:
            raise ValueError(f"{path}: key_id does not match the key")
        branches[file["key_id"]] = (path.stem, public_key)
    if not branches:
        raise ValueError(f"{directory} holds no branches/<branch-id>.pub")
    devices_file = directory / "devices.json"
    devices = {}
    if devices_file.exists():
        devices = {r["device_id"]: r for r in json.loads(devices_file.read_text(encoding="utf-8"))}
    return branches, devices


def verify_report(report, branches, devices):
    """Every check of REPORT-FORMAT.md, in its order; raises Invalid on the first failure."""
    try:
        body, content, ack = report["body"], report["body"]["content"], report["body"]["acknowledgement"]
        if body["format"] != REPORT_FORMAT:
            raise Invalid("malformed_report", f"format is {body['format']!r}")
        if body["key_id"] not in branches:
            raise Invalid("unknown_key", f"report is signed by unknown key {body['key_id']}")
        branch, branch_key = branches[body["key_id"]]
        if branch != body["branch_id"]:
            raise Invalid("key_not_for_branch", f"key {body['key_id']} is branch {branch}'s")
        check_signature(branch_key, report["signature"], jcs(body), "bad_branch_signature",
                        "the branch signature")
        computed = sha256_hex(jcs(content))
        if computed != body["content_digest"]:
            raise Invalid("digest_mismatch", f"the content hashes to {computed}")
        if report_id(body["job_id"], body["content_digest"]) != body["report_id"]:
            raise Invalid("malformed_report", "report_id does not derive from job and digest")
        if (content["job_id"], content["branch_id"]) != (body["job_id"], body["branch_id"]):
            raise Invalid("malformed_report", "the content's job or branch differs from the body's")
        device = devices.get(ack["device_id"])
        if device is None:
            raise Invalid("unknown_device", f"unknown device {ack['device_id']}")
        if device["branch_id"] != content["branch_id"]:
            raise Invalid("device_not_for_branch", f"device is enrolled at {device['branch_id']}")
        if device.get("revoked_at") is not None and device["revoked_at"] <= body["signed_at"]:
            raise Invalid("revoked_device", f"device was revoked at {device['revoked_at']}")
        check_signature(bytes.fromhex(device["public_key"]), ack["device_signature"],
                        ack_statement(content["job_id"], content["branch_id"], ack),
                        "bad_device_signature", "the device signature")
        current = sha256_hex(jcs(acknowledged_content(content)))
        if current != ack["job_digest"]:
            raise Invalid("acknowledgement_mismatch", f"acknowledged {ack['job_digest']}, content is {current}")
    except (KeyError, TypeError, AttributeError, ValueError, rfc8785.CanonicalizationError) as e:
        raise Invalid("malformed_report", f"{e.__class__.__name__}: {e}") from None
    return {"valid": True, "report_id": body["report_id"], "job_id": body["job_id"],
            "branch_id": body["branch_id"], "key_id": body["key_id"], "signed_at": body["signed_at"],
            "content_digest": body["content_digest"], "device_id": ack["device_id"],
            "acknowledged_by": ack["signer_name"]}


def check_vectors(directory):
    """Recomputes every published vector from its inputs; returns what was checked."""
    directory, checked = Path(directory), {}

    def load(name):
        return json.loads((directory / name).read_text(encoding="utf-8"))

    def expect(ok, kind, what):
        if not ok:
            raise Invalid("vector_mismatch", f"{kind}: {what}")
        checked[kind] = checked.get(kind, 0) + 1

    keys = load("keys.json")
    for name, k in keys.items():
        public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed"])).public_key().public_bytes_raw()
        expect(public.hex() == k["public_key"] and key_id(public) == k["key_id"], "keys", name)
    for case in load("canonical.json"):
        out = jcs(json.loads(case["input"]))
        expect(out == case["canonical"].encode() and sha256_hex(out) == case["sha256"], "canonical", case["input"])

    a = load("acknowledgement.json")
    job, ack = a["job"], a["acknowledgement"]
    content = jcs(acknowledged_content(job))
    expect(content == a["acknowledged_content_canonical"].encode(), "acknowledgement", "acknowledged content")
    expect(sha256_hex(content) == a["job_digest"] == ack["job_digest"], "acknowledgement", "job digest")
    expect(sorted({h.lower() for h in a["heads_input"]}) == a["heads"] == ack["heads"], "acknowledgement", "heads")
    image = a["image_mark_example"]
    for mark, text, digest in [(ack["signature"], a["signature_mark_canonical"], a["signature_mark_digest"]),
                               (image["mark"], image["canonical"], image["digest"])]:
        expect(jcs(mark) == text.encode() and sha256_hex(jcs(mark)) == digest, "acknowledgement", "mark")
    statement = ack_statement(job["job_id"], job["branch_id"], ack)
    expect(statement == a["statement_canonical"].encode(), "acknowledgement", "statement")
    check_signature(bytes.fromhex(keys["device"]["public_key"]), ack["device_signature"], statement,
                    "vector_mismatch", "acknowledgement: device signature")

    r = load("report.json")
    content = jcs(report_content(r["job"]))
    expect(content == r["content_canonical"].encode() and sha256_hex(content) == r["content_digest"],
           "report", "content")
    expect(f"{REPORT_FORMAT}\n{r['job']['job_id']}\n{r['content_digest']}" == r["report_id_preimage"], "report", "preimage")
    expect(report_id(r["job"]["job_id"], r["content_digest"]) == r["report_id"], "report", "report id")
    expect(bs58check(bytes.fromhex(r["report_id"])) == r["report_document_id"], "report", "document id")
    raw = (directory / r["export_file"]).read_bytes()
    export = strict_json(raw)
    expect(jcs(export) == raw and jcs(export["body"]) == r["body_canonical"].encode(), "report", "export bytes")
    trust = load_trust(directory / "trust")
    expect(verify_report(export, *trust)["report_id"] == r["report_id"], "report", "verifies")

    t = load("attestation.json")
    statement = jcs({"format": ATTESTATION_FORMAT, "record": t["record"]})
    expect(statement == t["statement_canonical"].encode(), "attestation", "statement")
    expect(t["attestation"]["key_id"] == keys["branch"]["key_id"], "attestation", "key id")
    check_signature(bytes.fromhex(keys["branch"]["public_key"]), t["attestation"]["signature"], statement,
                    "vector_mismatch", "attestation: signature")

    c = load("complaint.json")
    statement = jcs({"format": COMPLAINT_FORMAT, "branch_id": c["branch_id"], "complaint_id": c["complaint_id"],
                     "revision": c["revision"], "record": json.loads(c["record_json"])})
    expect(statement == c["statement_canonical"].encode(), "complaint", "statement")
    check_signature(bytes.fromhex(keys["branch"]["public_key"]), c["signature"], statement,
                    "vector_mismatch", "complaint: signature")
    preimage = b"\0".join(s.encode() for s in (COMPLAINT_DOC_KIND, c["branch_id"], c["complaint_id"]))
    expect(preimage.hex() == c["document_id_preimage_hex"], "complaint", "document id preimage")
    expect(bs58check(hashlib.sha256(preimage).digest()[:16]) == c["document_id"], "complaint", "document id")

    for entry in load("tampered/index.json"):
        try:
            verify_report(strict_json((directory / entry["file"]).read_bytes()), *trust)
            code = None
        except Invalid as e:
            code = e.code
        expect(code == entry["expect"], "tampered", f"{entry['file']}: {code}, expected {entry['expect']}")
    return {"valid": True, "checked": checked}


def main(argv):
    try:
        if len(argv) == 4 and argv[0] == "report" and argv[2] == "--trust":
            trust = load_trust(argv[3])
            try:
                report = strict_json(Path(argv[1]).read_bytes())
            except ValueError as e:
                raise Invalid("malformed_report", f"not JSON: {e}") from None
            result = verify_report(report, *trust)
        elif len(argv) == 2 and argv[0] == "vectors":
            result = check_vectors(argv[1])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Invalid as e:
        print(json.dumps({"valid": False, "code": e.code, "reason": str(e)}, ensure_ascii=False))
        return 1
    except (OSError, ValueError, KeyError) as e:
        print(json.dumps({"valid": False, "code": "unusable_input", "reason": f"{e.__class__.__name__}: {e}"}))
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
