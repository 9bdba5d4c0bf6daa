"""A synthetic CloudTrail source, so the app runs with no AWS account.

Two accounts, four regions (global services in us-east-1), IAM users, SSO and workload roles
with sessions, root, AWS services, read-only and mutating calls with realistic error codes,
a daily rhythm, and recurring incidents every hour:

- :17 an enumeration burst from a leaked access key (hundreds of List/Describe calls);
- :37 a spike of AccessDenied for one workload role;
- :47 a console login without MFA from an address never seen before;
- :52 a known user calling from a new source IP with an unusual client.

Every record is a function of (seed, 10-second slot): the same seed gives the same events,
whenever and however often they are asked for. Records carry a delivery delay, so that a live
poll sees late events the way CloudTrail delivers them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

SLOT = 10
UNIFORMS = 8  # per event: second, call, identity, region, ip, agent, error?, which error
MAX_DELAY = 15 * 60
PREFILL = 60 * 60
GLOBAL_SERVICES = {"iam.amazonaws.com", "signin.amazonaws.com", "organizations.amazonaws.com"}
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1")
REGION_WEIGHTS = (0.45, 0.25, 0.2, 0.1)
ACCOUNTS = {"production": "111122223333", "development": "444455556666"}

CONSOLE_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CLI_AGENT = (
    "aws-cli/2.22.4 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.6 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.24 md/prompt#off md/command#"
)
TERRAFORM_AGENT = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.78.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.5 os/linux "
    "lang/go#1.23.3 md/GOOS#linux md/GOARCH#amd64 api/"
)
JAVA_AGENT = (
    "aws-sdk-java/2.29.20 Linux/5.10.228-219.884.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS "
    "Java/21.0.5 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache "
    "cfg/retry-mode/legacy"
)
BOTO_AGENT = (
    "Boto3/1.35.71 md/Botocore#1.35.71 ua/2.0 os/linux#5.10.228 md/arch#x86_64 lang/python#3.12.7 "
    "md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.35.71"
)
SSM_AGENT = "amazon-ssm-agent/3.3.1142.0"
ATTACKER_AGENT = "python-requests/2.32.3"

# (eventSource, eventName, readOnly): the calls each kind of principal makes.
READS = {
    "ec2": [
        "DescribeInstances",
        "DescribeSecurityGroups",
        "DescribeVolumes",
        "DescribeSubnets",
        "DescribeVpcs",
        "DescribeImages",
        "DescribeNetworkInterfaces",
        "DescribeRegions",
    ],
    "s3": ["ListBuckets", "GetBucketPolicy", "GetBucketAcl", "GetBucketLocation", "GetBucketEncryption"],
    "iam": ["ListUsers", "ListRoles", "GetRole", "GetUser", "ListAttachedRolePolicies", "ListAccessKeys"],
    "sts": ["GetCallerIdentity"],
    "lambda": ["ListFunctions20150331", "GetFunction20150331v2"],
    "kms": ["Decrypt", "GenerateDataKey", "DescribeKey"],
    "dynamodb": ["DescribeTable", "ListTables"],
    "monitoring": ["GetMetricData", "DescribeAlarms"],
    "logs": ["DescribeLogGroups", "DescribeLogStreams"],
    "ssm": ["GetParameter", "GetParameters", "DescribeInstanceInformation"],
    "secretsmanager": ["GetSecretValue", "DescribeSecret"],
    "ecs": ["DescribeServices", "ListTasks", "DescribeTasks"],
    "autoscaling": ["DescribeAutoScalingGroups"],
    "cloudformation": ["DescribeStacks", "ListStacks"],
    "elasticloadbalancing": ["DescribeTargetHealth", "DescribeLoadBalancers"],
    "cloudtrail": ["LookupEvents", "DescribeTrails"],
}
WRITES = {
    "ec2": [
        "RunInstances",
        "TerminateInstances",
        "CreateTags",
        "StartInstances",
        "StopInstances",
        "AuthorizeSecurityGroupIngress",
        "CreateSnapshot",
    ],
    "s3": ["PutBucketPolicy", "CreateBucket", "PutBucketTagging"],
    "iam": ["CreateRole", "AttachRolePolicy", "PutRolePolicy", "CreatePolicyVersion", "TagRole"],
    "lambda": ["UpdateFunctionCode20150331v2", "UpdateFunctionConfiguration20150331v2"],
    "logs": ["CreateLogStream", "PutRetentionPolicy"],
    "ssm": ["UpdateInstanceInformation", "PutParameter"],
    "ecs": ["UpdateService", "RegisterTaskDefinition"],
    "cloudformation": ["UpdateStack", "CreateChangeSet"],
    "monitoring": ["PutMetricAlarm"],
    "dynamodb": ["UpdateTable"],
}
ERRORS = {
    "ec2": [
        ("Client.UnauthorizedOperation", "You are not authorized to perform this operation."),
        ("Client.InvalidInstanceID.NotFound", "The instance ID 'i-0a1b2c3d4e5f60718' does not exist"),
        ("Client.RequestLimitExceeded", "Request limit exceeded."),
    ],
    "iam": [
        ("AccessDenied", "User is not authorized to perform this action"),
        ("NoSuchEntityException", "The role with name legacy-build cannot be found."),
    ],
    "s3": [("AccessDenied", "Access Denied"), ("NoSuchBucketPolicy", "The bucket policy does not exist")],
    "": [
        ("AccessDenied", "User is not authorized to perform this action"),
        ("ThrottlingException", "Rate exceeded"),
        ("ResourceNotFoundException", "Requested resource not found"),
        ("ValidationException", "1 validation error detected"),
    ],
}
PARAMETERS = {
    "DescribeInstances": {"instancesSet": {}, "filterSet": {}},
    "RunInstances": {"instanceType": "t3.medium", "minCount": 1, "maxCount": 1},
    "GetSecretValue": {"secretId": "prod/orders/db"},
    "GetParameter": {"name": "/orders/feature-flags", "withDecryption": False},
    "GetParameters": {"names": ["/orders/db-host", "/orders/db-port"], "withDecryption": False},
    "Decrypt": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
    "GenerateDataKey": {"keyId": "alias/orders", "keySpec": "AES_256"},
    "DescribeTable": {"tableName": "orders"},
    "CreateLogStream": {"logGroupName": "/aws/lambda/billing-export", "logStreamName": "2026/11/27/[$LATEST]"},
    "ListBuckets": {"Host": "s3.amazonaws.com"},
    "AssumeRole": {"roleSessionName": "session", "durationSeconds": 3600},
}


BUCKETS = ("orders-exports-prod", "orders-static-assets", "billing-reports")
LAMBDAS = ("billing-export", "orders-webhook", "thumbnailer")


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, separators=(",", ":"))


def _variants(name: str, account: str) -> list[dict]:
    """Realistic, benign request parameters of the calls the parameter-refined rules read:
    policies that stay in the account, ingress from the VPC and the office, ordinary instance
    types, a handful of secrets."""
    role = f"arn:aws:iam::{account}:role"
    if name == "PutBucketPolicy":
        return [
            {
                "bucketName": bucket,
                "Host": f"{bucket}.s3.amazonaws.com",
                "policy": [""],
                "bucketPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": f"{role}/orders-api-task"},
                            "Action": ["s3:GetObject", "s3:PutObject"],
                            "Resource": f"arn:aws:s3:::{bucket}/*",
                        },
                        {
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            }
            for bucket in BUCKETS
        ]
    if name == "AuthorizeSecurityGroupIngress":
        return [
            {
                "groupId": group,
                "ipPermissions": {
                    "items": [
                        {
                            "ipProtocol": "tcp",
                            "fromPort": port,
                            "toPort": port,
                            "groups": {},
                            "ipRanges": {"items": [{"cidrIp": cidr, "description": why}]},
                            "ipv6Ranges": {},
                            "prefixListIds": {},
                        }
                    ]
                },
            }
            for group, port, cidr, why in (
                ("sg-0a1b2c3d4e5f60718", 443, "10.20.0.0/16", "VPC"),
                ("sg-0b2c3d4e5f6071829", 22, "198.51.100.23/32", "office"),
                ("sg-0c3d4e5f607182930", 5432, "10.20.0.0/16", "orders database"),
            )
        ]
    if name == "RunInstances":
        return [
            {
                "instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890", "minCount": 1, "maxCount": count}]},
                "instanceType": kind,
                "subnetId": "subnet-0123456789abcdef0",
            }
            for kind, count in (("t3.medium", 1), ("m7i.large", 2), ("c7g.xlarge", 1), ("t3.small", 1))
        ]
    if name == "GetSecretValue":
        return [
            {"secretId": secret} for secret in ("prod/orders/db", "prod/orders/stripe-api-key", "prod/orders/redis")
        ]
    if name == "GetParameters":
        return [
            {"names": ["/orders/db-host", "/orders/db-port"], "withDecryption": False},
            {"names": ["/orders/db-password"], "withDecryption": True},
        ]
    if name == "CreateRole":
        return [
            {
                "roleName": f"{service.split('.')[0]}-{suffix}",
                "assumeRolePolicyDocument": _policy(
                    {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
                ),
            }
            for service, suffix in (("lambda.amazonaws.com", "thumbnailer"), ("ecs-tasks.amazonaws.com", "orders-api"))
        ] + [
            {
                "roleName": "deploy-readonly",
                "assumeRolePolicyDocument": _policy(
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ),
            }
        ]
    if name == "AttachRolePolicy":
        return [
            {"roleName": "orders-api-task", "policyArn": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"},
            {"roleName": "deploy-readonly", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
            {"roleName": "lambda-thumbnailer", "policyArn": f"arn:aws:iam::{account}:policy/thumbnailer-s3"},
        ]
    if name == "PutRolePolicy":
        return [
            {
                "roleName": "orders-api-task",
                "policyName": "orders-table",
                "policyDocument": _policy(
                    {
                        "Effect": "Allow",
                        "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                        "Resource": f"arn:aws:dynamodb:us-east-1:{account}:table/orders",
                    }
                ),
            }
        ]
    if name == "CreatePolicyVersion":
        return [
            {
                "policyArn": f"arn:aws:iam::{account}:policy/thumbnailer-s3",
                "setAsDefault": True,
                "policyDocument": _policy(
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::orders-static-assets/*"}
                ),
            }
        ]
    if name == "PutRetentionPolicy":
        return [
            {"logGroupName": f"/aws/lambda/{function}", "retentionInDays": days}
            for function, days in zip(LAMBDAS, (30, 90, 365), strict=True)
        ]
    if name in ("UpdateFunctionCode20150331v2", "UpdateFunctionConfiguration20150331v2"):
        extra = {"publish": True} if name.startswith("UpdateFunctionCode") else {"timeout": 30, "memorySize": 512}
        return [{"functionName": function, **extra} for function in LAMBDAS]
    if name == "CreateSnapshot":
        return [{"volumeId": "vol-0123456789abcdef0", "description": "nightly backup"}]
    if name in ("TerminateInstances", "StartInstances", "StopInstances"):
        return [{"instancesSet": {"items": [{"instanceId": "i-00000000000003f2a"}]}}]
    if name in ("CreateBucket", "PutBucketTagging"):
        return [{"bucketName": bucket, "Host": f"{bucket}.s3.amazonaws.com"} for bucket in BUCKETS]
    return []


def _service(source: str) -> str:
    return source.split(".", 1)[0]


def _source(service: str) -> str:
    return f"{service}.amazonaws.com"


@dataclass
class Actor:
    """A principal with its habits: identities (one per session), calls, places and clients."""

    key: str
    share: float  # part of the normal traffic
    identities: list[dict]
    calls: list[tuple[str, str, bool]]
    call_weights: list[float]
    ips: list[str]
    agents: list[str]
    regions: tuple[str, ...] = REGIONS
    region_weights: tuple[float, ...] = REGION_WEIGHTS
    error_rate: float = 0.015
    event_type: str = "AwsApiCall"
    pinned_ips: bool = False  # each identity calls from its own address (instances), not from any
    _calls_cdf: list[float] = field(init=False, repr=False)
    _regions_cdf: list[float] = field(init=False, repr=False)

    def __post_init__(self):
        self._calls_cdf = _cdf(self.call_weights)
        self._regions_cdf = _cdf(self.region_weights)

    def call(self, u: float) -> tuple[str, str, bool]:
        return self.calls[min(bisect.bisect_left(self._calls_cdf, u), len(self.calls) - 1)]

    def region(self, u: float) -> str:
        return self.regions[min(bisect.bisect_left(self._regions_cdf, u), len(self.regions) - 1)]


def _cdf(weights) -> list[float]:
    total = float(sum(weights))
    running, out = 0.0, []
    for w in weights:
        running += w / total
        out.append(running)
    return out


def _calls(services: dict[str, float], write_share: float) -> tuple[list, list]:
    calls, weights = [], []
    for service, weight in services.items():
        reads, writes = READS.get(service, []), WRITES.get(service, [])
        for name in reads:
            calls.append((_source(service), name, True))
            weights.append(weight * (1 - write_share) / len(reads) if writes else weight / len(reads))
        for name in writes:
            calls.append((_source(service), name, False))
            weights.append(weight * write_share / len(writes))
    return calls, weights


def _hex_id(prefix: str, text: str, length: int = 17) -> str:
    """A stable identifier in AWS's style (AIDA…, AROA…, AKIA…) derived from a name."""
    return prefix + hashlib.blake2b(f"{prefix}{text}".encode(), digest_size=16).hexdigest().upper()[:length]


def iam_user(account: str, name: str) -> dict:
    return {
        "type": "IAMUser",
        "principalId": _hex_id("AIDA", name),
        "arn": f"arn:aws:iam::{account}:user/{name}",
        "accountId": account,
        "accessKeyId": _hex_id("AKIA", name, 16),
        "userName": name,
    }


def assumed_role(account: str, role: str, session: str, path: str = "", mfa: bool = False) -> dict:
    role_id = _hex_id("AROA", role)
    return {
        "type": "AssumedRole",
        "principalId": f"{role_id}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": _hex_id("ASIA", role + session, 16),
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": role_id,
                "arn": f"arn:aws:iam::{account}:role/{path}{role}",
                "accountId": account,
                "userName": role,
            },
            "webIdFederationData": {},
            "attributes": {"creationDate": "2026-01-01T00:00:00Z", "mfaAuthenticated": "true" if mfa else "false"},
        },
    }


def root(account: str) -> dict:
    return {
        "type": "Root",
        "principalId": account,
        "arn": f"arn:aws:iam::{account}:root",
        "accountId": account,
        "accessKeyId": "",
    }


def federated(account: str, name: str, issuer: str) -> dict:
    return {
        "type": "FederatedUser",
        "principalId": f"{account}:{name}",
        "arn": f"arn:aws:sts::{account}:federated-user/{name}",
        "accountId": account,
        "sessionContext": {
            "sessionIssuer": {
                "type": "IAMUser",
                "principalId": _hex_id("AIDA", issuer),
                "arn": f"arn:aws:iam::{account}:user/{issuer}",
                "accountId": account,
                "userName": issuer,
            },
            "webIdFederationData": {},
            "attributes": {"creationDate": "2026-01-01T00:00:00Z", "mfaAuthenticated": "false"},
        },
    }


def aws_service(service: str) -> dict:
    return {"type": "AWSService", "invokedBy": service}


def _actors() -> list[Actor]:
    prod, dev = ACCOUNTS["production"], ACCOUNTS["development"]
    sso = "aws-reserved/sso.amazonaws.com/"
    everything = {s: 1.0 for s in READS}
    actors = [
        Actor(
            "sso-admins",
            0.10,
            [
                assumed_role(a, "AWSReservedSSO_AdministratorAccess_5f1e2d3c4b5a6978", who, sso, mfa=True)
                for a in (prod, dev)
                for who in ("alice@example.com", "carol@example.com")
            ],
            *_calls(everything, 0.08),
            ["198.51.100.23", "198.51.100.24"],
            [CONSOLE_AGENT, "AWS Internal"],
        ),
        Actor(
            "developers",
            0.12,
            [iam_user(dev, "bob"), iam_user(dev, "erin"), iam_user(prod, "bob")],
            *_calls(
                {"ec2": 3, "s3": 2, "lambda": 2, "logs": 2, "cloudformation": 1, "sts": 1, "iam": 1, "ecs": 1}, 0.1
            ),
            ["198.51.100.31", "198.51.100.32"],
            [CLI_AGENT + "ec2.describe-instances", CLI_AGENT + "s3.ls"],
        ),
        Actor(
            "ci-deployer",
            0.10,
            [iam_user(prod, "ci-deployer"), iam_user(dev, "ci-deployer")],
            *_calls({"ec2": 3, "iam": 2, "s3": 2, "lambda": 1, "ecs": 1, "cloudformation": 1, "sts": 1}, 0.2),
            ["192.0.2.50", "192.0.2.51", "192.0.2.52"],
            [TERRAFORM_AGENT + "EC2", TERRAFORM_AGENT + "IAM"],
            error_rate=0.02,
        ),
        Actor(
            "orders-api",
            0.30,
            [
                assumed_role(prod, "orders-api-task", f"{i:032x}"[-32:], "service-role/")
                for i in (0x5A1C9E, 0x71B3D2, 0x8F04A6)
            ],
            [
                ("kms.amazonaws.com", "Decrypt", True),
                ("secretsmanager.amazonaws.com", "GetSecretValue", True),
                ("ssm.amazonaws.com", "GetParameters", True),
                ("dynamodb.amazonaws.com", "DescribeTable", True),
                ("sts.amazonaws.com", "AssumeRole", True),
            ],
            [5, 2, 2, 1, 1],
            ["10.20.1.15", "10.20.2.27", "10.20.3.41"],
            [JAVA_AGENT],
            regions=("us-east-1", "eu-west-1"),
            region_weights=(0.7, 0.3),
            error_rate=0.005,
        ),
        Actor(
            "billing-export",
            0.10,
            [assumed_role(prod, "billing-export-role", "billing-export")],
            [
                ("logs.amazonaws.com", "CreateLogStream", False),
                ("kms.amazonaws.com", "GenerateDataKey", True),
                ("s3.amazonaws.com", "GetBucketLocation", True),
                ("dynamodb.amazonaws.com", "DescribeTable", True),
            ],
            [1, 3, 1, 1],
            ["3.85.12.77", "44.201.9.130"],
            [BOTO_AGENT],
            regions=("us-east-1",),
            region_weights=(1.0,),
        ),
        Actor(
            "web-fleet",
            0.13,
            [assumed_role(prod, "web-fleet-instance", f"i-0{n:016x}") for n in (0x3F2A, 0x5B71, 0x9C0E, 0xA4D3)],
            [
                ("ssm.amazonaws.com", "UpdateInstanceInformation", False),
                ("ec2.amazonaws.com", "DescribeTags", True),
                ("ssm.amazonaws.com", "ListInstanceAssociations", True),
                ("monitoring.amazonaws.com", "DescribeAlarms", True),
            ],
            [3, 1, 2, 1],
            ["10.20.4.11", "10.20.4.12", "10.20.5.13", "10.20.5.14"],
            [SSM_AGENT],
            regions=("us-east-1", "us-west-2"),
            region_weights=(0.6, 0.4),
            error_rate=0.003,
            pinned_ips=True,
        ),
        Actor(
            "aws-services",
            0.12,
            [
                aws_service("autoscaling.amazonaws.com"),
                aws_service("ecs.amazonaws.com"),
                aws_service("elasticloadbalancing.amazonaws.com"),
            ],
            [
                ("ec2.amazonaws.com", "DescribeInstances", True),
                ("ec2.amazonaws.com", "DescribeNetworkInterfaces", True),
                ("ec2.amazonaws.com", "RunInstances", False),
                ("ec2.amazonaws.com", "CreateNetworkInterface", False),
            ],
            [4, 4, 1, 1],
            [],
            [],
            error_rate=0.002,
        ),
        Actor(
            "service-events",
            0.02,
            [{"accountId": prod, "invokedBy": "AWS Internal"}],
            [
                ("kms.amazonaws.com", "RotateKey", False),
                ("ec2.amazonaws.com", "SharedSnapshotVolumeCreated", False),
                ("health.amazonaws.com", "AWSHealthEvent", True),
            ],
            [1, 1, 1],
            ["AWS Internal"],
            ["AWS Internal"],
            error_rate=0.0,
            event_type="AwsServiceEvent",
        ),
        Actor(
            "partner",
            0.008,
            [federated(prod, "partner-upload", "partner-portal")],
            [("s3.amazonaws.com", "ListBuckets", True), ("s3.amazonaws.com", "GetBucketLocation", True)],
            [1, 1],
            ["203.0.113.200"],
            [BOTO_AGENT],
            regions=("eu-west-1",),
            region_weights=(1.0,),
        ),
        Actor(
            "root",
            0.002,
            [root(prod)],
            [
                ("iam.amazonaws.com", "GetAccountSummary", True),
                ("iam.amazonaws.com", "ListMFADevices", True),
                ("ce.amazonaws.com", "GetCostAndUsage", True),
                ("account.amazonaws.com", "GetContactInformation", True),
            ],
            [1, 1, 2, 1],
            ["198.51.100.23"],
            [CONSOLE_AGENT],
            regions=("us-east-1",),
            region_weights=(1.0,),
        ),
    ]
    return actors


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[raw[8] & 3]}{h[17:20]}-{h[20:32]}"


def rhythm(seconds: float) -> float:
    """Share of the peak rate at this time: busiest at 14:00 UTC, quieter at weekends."""
    hour = (seconds % 86_400) / 3600
    distance = min(abs(hour - 14), 24 - abs(hour - 14))
    weekday = int(seconds // 86_400 + 3) % 7  # 1970-01-01 was a Thursday; 5 and 6 are the weekend
    weekend = 0.5 if weekday >= 5 else 1.0
    return (0.35 + 0.65 * math.exp(-((distance / 4.5) ** 2))) * weekend


class DemoSource:
    """Deterministic synthetic CloudTrail records; see the module docstring."""

    name = "demo"

    def __init__(self, seed: int = 7, rate: float = 4.0, incidents: bool = True, prefill: int = PREFILL):
        self.seed = seed
        self.rate = rate  # events per second at the daily peak
        self.incidents = incidents
        self.prefill = prefill
        self.actors = _actors()
        self._shares = np.array([a.share for a in self.actors])
        self._shares /= self._shares.sum()
        self._cache: OrderedDict[int, list[tuple[int, dict]]] = OrderedDict()
        self._start: int | None = None
        self._cursor: int | None = None
        self._tls: dict[str, dict] = {}
        self._variant_cache: dict[tuple[str, str], list[dict]] = {}

    # -- a live source -------------------------------------------------------------------------
    def poll(self, now: float) -> list[dict]:
        """Records that became visible since the last poll (the first poll: the last hour)."""
        now = int(now)
        if self._cursor is None:
            self._start = now - self.prefill
            self._cursor = now
            return self.visible_between(self._start - MAX_DELAY, now, not_before=self._start)
        records = self.visible_between(self._cursor, now, not_before=self._start)
        self._cursor = max(self._cursor, now)
        return records

    def watermark(self, now: float) -> float:
        """Every event before this time has been delivered."""
        return now - MAX_DELAY

    # -- by time ------------------------------------------------------------------------------
    def records(self, start: float, end: float) -> list[dict]:
        """Every record with start <= eventTime < end, in slot order."""
        start, end = int(start), int(end)
        out = []
        for slot in range(start // SLOT, (end - 1) // SLOT + 1):
            for _, record, second in self._slot(slot):
                if start <= second < end:
                    out.append(record)
        return out

    def visible_between(self, start: int, end: int, not_before: int | None = None) -> list[dict]:
        """Records delivered in [start, end) with eventTime >= not_before."""
        out = []
        first = (start - MAX_DELAY) // SLOT
        if not_before is not None:
            first = max(first, not_before // SLOT)
        for slot in range(first, (end - 1) // SLOT + 1):
            for visible, record, second in self._slot(slot):
                if start <= visible < end and (not_before is None or second >= not_before):
                    out.append(record)
        return out

    def _slot(self, slot: int) -> list[tuple[int, dict, int]]:
        cached = self._cache.get(slot)
        if cached is not None:
            self._cache.move_to_end(slot)
            return cached
        events = self._generate(slot)
        self._cache[slot] = events
        if len(self._cache) > 2 * MAX_DELAY // SLOT + 16:
            self._cache.popitem(last=False)
        return events

    # -- generation ---------------------------------------------------------------------------
    def _generate(self, slot: int) -> list[tuple[int, dict, int]]:
        rng = np.random.default_rng([self.seed, slot])
        base = slot * SLOT
        n = int(rng.poisson(self.rate * SLOT * rhythm(base)))
        plan = []  # (second, actor, call, uniforms, fields that override the actor's habits)
        actor_ids = rng.choice(len(self.actors), size=n, p=self._shares).tolist()
        uniforms = rng.random((n, UNIFORMS)).tolist()
        for i in range(n):
            actor = self.actors[actor_ids[i]]
            u = uniforms[i]
            plan.append((base + int(u[0] * SLOT), actor, actor.call(u[1]), u, None))
        if self.incidents:
            plan.extend(self._incidents(slot, rng))
        ids = rng.bytes(32 * len(plan))
        delays = self._delays(rng, len(plan)).tolist()
        events = []
        for i, (second, actor, call, u, fields) in enumerate(plan):
            record = self._record(
                actor, call, second, u, ids[32 * i : 32 * i + 16], ids[32 * i + 16 : 32 * i + 32], **(fields or {})
            )
            events.append((second + delays[i], record, second))
        return events

    @staticmethod
    def _delays(rng, n: int) -> np.ndarray:
        kind = rng.random(n)
        short = rng.uniform(2, 45, n)
        medium = rng.uniform(45, 300, n)
        late = rng.uniform(300, MAX_DELAY - 60, n)
        return np.where(kind < 0.90, short, np.where(kind < 0.98, medium, late)).astype(np.int64)

    def _record(
        self,
        actor: Actor,
        call,
        second: int,
        u,
        event_id: bytes,
        request_id: bytes,
        ip: str | None = None,
        agent: str | None = None,
        error=None,
        identity: dict | None = None,
        region: str | None = None,
        event_type: str | None = None,
        extra: dict | None = None,
    ) -> dict:
        source, name, read_only = call
        which = int(u[2] * len(actor.identities))
        identity = identity or actor.identities[which]
        if source in GLOBAL_SERVICES:
            region = "us-east-1"
        elif region is None:
            region = actor.region(u[3])
        if identity.get("type") == "AWSService":
            ip = ip or identity["invokedBy"]
            agent = agent or identity["invokedBy"]
        if ip is None and actor.pinned_ips:
            ip = actor.ips[which % len(actor.ips)]
        ip = ip or actor.ips[int(u[4] * len(actor.ips))]
        agent = agent or actor.agents[int(u[5] * len(actor.agents))]
        account = identity.get("accountId") or ACCOUNTS["production"]
        record = {
            "eventVersion": "1.10",
            "userIdentity": identity,
            "eventTime": datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": ip,
            "userAgent": agent,
            "requestParameters": self._parameters(name, account, event_id[0]),
            "responseElements": None,
            "requestID": _uuid(request_id),
            "eventID": _uuid(event_id),
            "readOnly": read_only,
            "eventType": event_type or actor.event_type,
            "managementEvent": True,
            "recipientAccountId": account,
            "eventCategory": "Management",
            "tlsDetails": self._tls_for(source, region),
        }
        if error is None and u[6] < actor.error_rate:
            options = ERRORS.get(_service(source), ERRORS[""])
            error = options[int(u[7] * len(options))]
        if error is not None:
            record["errorCode"], record["errorMessage"] = error
        if extra:
            record.update(extra)
        return record

    def _parameters(self, name: str, account: str, pick: int) -> dict | None:
        """The call's request parameters, one of its variants chosen by a byte of the eventID
        (so the choice draws nothing from the generator and the events stay the same)."""
        variants = self._variant_cache.get((name, account))
        if variants is None:
            variants = self._variant_cache[(name, account)] = _variants(name, account)
        if variants:
            return variants[pick % len(variants)]
        return PARAMETERS.get(name)

    def _tls_for(self, source: str, region: str) -> dict:
        host = f"{_service(source)}.{region}.amazonaws.com"
        tls = self._tls.get(host)
        if tls is None:
            tls = self._tls[host] = {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": host,
            }
        return tls

    # -- incidents ----------------------------------------------------------------------------
    def _incidents(self, slot: int, rng) -> list:
        """Extra events of the hourly incidents that fall in this slot."""
        base = slot * SLOT
        hour, minute_second = divmod(base, 3600)
        plan = []

        def add(count, actor, calls, **fields):
            for u in rng.random((count, UNIFORMS)).tolist():
                plan.append((base + int(u[0] * SLOT), actor, calls[int(u[1] * len(calls))], u, fields))

        if 17 * 60 <= minute_second < 18 * 60:  # enumeration with a leaked key
            leaked = self._incident_actor("leaked-key", iam_user(ACCOUNTS["production"], "svc-backup"))
            calls = [
                (_source(s), n, True) for s in ("ec2", "iam", "s3", "lambda", "secretsmanager", "ssm") for n in READS[s]
            ]
            add(
                int(rng.poisson(110)),
                leaked,
                calls,
                ip=f"203.0.113.{hour % 200 + 10}",
                agent=ATTACKER_AGENT,
                region=REGIONS[int(rng.integers(len(REGIONS)))],
            )
        if 37 * 60 <= minute_second < 39 * 60:  # a workload loses its permissions
            actor = self.actor("orders-api")
            calls = [("secretsmanager.amazonaws.com", "GetSecretValue", True), ("kms.amazonaws.com", "Decrypt", True)]
            add(
                int(rng.poisson(18)),
                actor,
                calls,
                error=(
                    "AccessDenied",
                    "User: arn:aws:sts::111122223333:assumed-role/orders-api-task/session is not "
                    "authorized to perform this action because no identity-based policy allows it",
                ),
            )
        if minute_second // SLOT == 47 * 6:  # console login without MFA, then a look around
            user = iam_user(ACCOUNTS["production"], "dave")
            actor = self._incident_actor("no-mfa", user)
            ip = f"203.0.113.{(hour * 7) % 200 + 10}"
            add(
                1,
                actor,
                [("signin.amazonaws.com", "ConsoleLogin", False)],
                ip=ip,
                agent=CONSOLE_AGENT,
                region="us-east-1",
                event_type="AwsConsoleSignIn",
                extra={
                    "additionalEventData": {
                        "LoginTo": "https://console.aws.amazon.com/console/home",
                        "MobileVersion": "No",
                        "MFAUsed": "No",
                    },
                    "responseElements": {"ConsoleLogin": "Success"},
                    "requestParameters": None,
                },
            )
            add(
                6,
                actor,
                [("iam.amazonaws.com", "ListUsers", True), ("s3.amazonaws.com", "ListBuckets", True)],
                ip=ip,
                agent=CONSOLE_AGENT,
            )
        if 52 * 60 <= minute_second < 53 * 60:  # a known user from a new place with a new client
            actor = self.actor("developers")
            add(
                3,
                actor,
                [
                    ("iam.amazonaws.com", "ListUsers", True),
                    ("iam.amazonaws.com", "CreateAccessKey", False),
                    ("sts.amazonaws.com", "GetCallerIdentity", True),
                ],
                ip=f"198.18.{hour % 250}.{hour % 13 + 2}",
                agent="curl/8.5.0",
                identity=actor.identities[0],
            )
        return plan

    def actor(self, key: str) -> Actor:
        return next(a for a in self.actors if a.key == key)

    def _incident_actor(self, key: str, identity: dict) -> Actor:
        return Actor(
            key,
            0.0,
            [identity],
            [("sts.amazonaws.com", "GetCallerIdentity", True)],
            [1.0],
            ["203.0.113.9"],
            [ATTACKER_AGENT],
            error_rate=0.0,
        )
