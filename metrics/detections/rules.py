"""The rule table: every detection as data. The building blocks are in ``matchers``.

Severity says how sure and how bad: ``critical`` and ``high`` are rarely benign (logging
stopped, data shared outside the account, an admin backdoor), ``medium`` is a sensitive change
that routine work also makes, ``low`` and ``info`` are context worth a look.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from metrics.detections import exposure, tampering
from metrics.detections import matchers as m
from metrics.detections.correlate import InstanceCredentialsElsewhere, InstanceSessionElsewhere, LifecycleExpiry
from metrics.detections.gates import where
from metrics.detections.matchers import calls
from metrics.detections.model import Burst, FirstSeen, Rule
from metrics.detections.record import (
    account_of,
    api_name,
    is_aws_service_call,
    parse_ip,
    principal_key,
    text,
    user_agent_family,
)
from metrics.detections.tampering import offensive_tool

WHO = ("userIdentity.arn", "sourceIPAddress", "userAgent")
IAM = "iam.amazonaws.com"
EC2 = "ec2.amazonaws.com"
LAMBDA = "lambda.amazonaws.com"
S3 = "s3.amazonaws.com"
RDS = "rds.amazonaws.com"
DEFAULT_LOG_EXPIRY_DAYS = 7.0


def _burst(key, window, threshold, what, distinct=None) -> Burst:
    return Burst(key, window, threshold, distinct, what)


def unusual_instances_rule(patterns: Iterable[str] = m.UNUSUAL_INSTANCE_TYPES) -> Rule:
    """The unusual-instance rule for other instance type patterns (globs such as ``p*``)."""
    return Rule(
        "ec2-unusual-instance-type",
        "Instances of an unusual type launched",
        "medium",
        "T1496",
        "RunInstances of GPU, accelerator, very large or bare-metal types, the usual choice of "
        "cryptomining with stolen credentials.",
        ("requestParameters.instanceType", "requestParameters.instancesSet", *WHO),
        calls(EC2, "RunInstances", detail=m.unusual_instances(patterns)),
    )


# -- first-seen keys and values --------------------------------------------------------------


def _principal(record: dict) -> str | None:
    return None if is_aws_service_call(record) else principal_key(record)


def _address(record: dict) -> str | None:
    value = record.get("sourceIPAddress")
    return value if parse_ip(value) is not None else None


def _api(record: dict) -> str | None:
    source = text(record, "eventSource")
    return f"{source.removesuffix('.amazonaws.com')}:{api_name(record)}" if source else None


def _agent(record: dict) -> str | None:
    return user_agent_family(record.get("userAgent")) or None


def _region(record: dict) -> str | None:
    return text(record, "awsRegion") or None


def _by_principal_and_tool(tool):
    def key(record: dict) -> str | None:
        name = tool(record.get("userAgent"))
        return f"{m.by_principal(record)} with {name}" if name else None

    return key


def _offensive(tool):
    @where(userAgent=lambda agent: bool(tool(agent)))
    def match(record: dict) -> str | None:
        name = tool(record.get("userAgent"))
        return f"{m.describe(record)} with {name}" if name else None

    return match


def _coverage(trusted: frozenset, log_expiry_days: float, tool) -> tuple[Rule, ...]:
    """What attackers do to data, logs, identities and detection beyond the classic table."""
    policy = exposure.resource_policy(trusted)
    return (
        # -- data opened to other accounts or to everyone -------------------------------------
        Rule(
            "s3-bucket-policy-opened",
            "S3 bucket policy lets in another account or everyone",
            "high",
            "T1537",
            "PutBucketPolicy allowing a principal of another account (not one of INSIGHTS_ORG_ACCOUNTS) or * "
            "without a condition that ties it to known callers.",
            ("requestParameters.bucketName", "requestParameters.bucketPolicy", *WHO),
            calls(S3, "PutBucketPolicy", detail=policy),
        ),
        Rule(
            "s3-bucket-acl-opened",
            "S3 bucket ACL opened",
            "high",
            "T1537",
            "PutBucketAcl granting AllUsers (everyone), AuthenticatedUsers (any AWS account), or another "
            "account's canonical user or e-mail.",
            ("requestParameters.bucketName", "requestParameters.AccessControlPolicy", *WHO),
            calls(S3, "PutBucketAcl", detail=exposure.bucket_acl),
        ),
        Rule(
            "s3-public-access-block-off",
            "S3 public access block turned off",
            "high",
            "T1562.007",
            "The public access block of a bucket or of the account deleted, or any of its protections turned off.",
            ("requestParameters.bucketName", "requestParameters.PublicAccessBlockConfiguration", *WHO),
            calls(
                S3,
                "DeleteBucketPublicAccessBlock",
                "PutBucketPublicAccessBlock",
                "DeleteAccountPublicAccessBlock",
                "PutAccountPublicAccessBlock",
                detail=exposure.public_access_block,
            ),
        ),
        Rule(
            "s3-replication-outside",
            "S3 bucket replicated to another account",
            "high",
            "T1537",
            "PutBucketReplication whose destination names another account: every new object copied out.",
            ("requestParameters.bucketName", "requestParameters.ReplicationConfiguration", *WHO),
            calls(S3, "PutBucketReplication", detail=exposure.replication(trusted)),
        ),
        Rule(
            "lambda-permission-other-account",
            "Lambda function opened to another account",
            "high",
            "T1648",
            "AddPermission for a principal of another account (anyone is the public-access rule).",
            ("requestParameters.functionName", "requestParameters.principal", "requestParameters.action", *WHO),
            calls(LAMBDA, "AddPermission", detail=exposure.lambda_other_account(trusted)),
        ),
        Rule(
            "resource-policy-opened",
            "KMS, ECR, SNS or SQS policy lets in another account or everyone",
            "high",
            "T1537",
            "PutKeyPolicy, CreateKey, SetRepositoryPolicy, SetTopicAttributes (Policy) or SetQueueAttributes "
            "(Policy) allowing a principal of another account or * without a restricting condition.",
            ("requestParameters.keyId", "requestParameters.repositoryName", "requestParameters.topicArn", *WHO),
            m.either(
                calls("kms.amazonaws.com", "PutKeyPolicy", "CreateKey", detail=policy),
                calls("ecr.amazonaws.com", "SetRepositoryPolicy", detail=policy),
                calls("sns.amazonaws.com", "SetTopicAttributes", detail=policy),
                calls("sqs.amazonaws.com", "SetQueueAttributes", detail=policy),
            ),
        ),
        Rule(
            "rds-publicly-accessible",
            "RDS database made publicly accessible",
            "high",
            "T1537",
            "ModifyDBInstance or a RestoreDBInstance call with publiclyAccessible true.",
            ("requestParameters.dBInstanceIdentifier", "requestParameters.publiclyAccessible", *WHO),
            calls(
                RDS,
                "ModifyDBInstance",
                "RestoreDBInstanceFromDBSnapshot",
                "RestoreDBInstanceToPointInTime",
                "RestoreDBInstanceFromS3",
                detail=exposure.rds_public,
            ),
        ),
        # -- log destruction outside the CloudTrail API ------------------------------------------
        Rule(
            "s3-lifecycle-expiry",
            "S3 lifecycle rule deletes objects within days",
            "medium",
            "T1070",
            f"A lifecycle rule expiring objects (or older versions) within INSIGHTS_LOG_EXPIRY_DAYS "
            f"({log_expiry_days:g} days): data or logs destroyed without a Delete call. High when the bucket "
            "receives a trail's logs (learned from the CreateTrail and UpdateTrail events seen).",
            ("requestParameters.bucketName", "requestParameters.LifecycleConfiguration", *WHO),
            correlate=lambda: LifecycleExpiry(log_expiry_days),
        ),
        Rule(
            "cloudwatch-logs-deleted",
            "CloudWatch Logs group or stream deleted",
            "medium",
            "T1070",
            "DeleteLogGroup or DeleteLogStream: logs gone.",
            ("requestParameters.logGroupName", "requestParameters.logStreamName", *WHO),
            calls("logs.amazonaws.com", "DeleteLogGroup", "DeleteLogStream"),
        ),
        Rule(
            "cloudwatch-logs-retention-a-day",
            "CloudWatch Logs kept for a day",
            "medium",
            "T1070",
            "PutRetentionPolicy of one day: the log group empties itself.",
            ("requestParameters.logGroupName", "requestParameters.retentionInDays", *WHO),
            calls("logs.amazonaws.com", "PutRetentionPolicy", detail=tampering.retention_of_a_day),
        ),
        Rule(
            "s3-versioning-suspended",
            "S3 bucket versioning suspended",
            "medium",
            "T1490",
            "PutBucketVersioning suspending versioning or disabling MFA delete: overwritten and deleted "
            "objects can no longer be recovered.",
            ("requestParameters.bucketName", "requestParameters.VersioningConfiguration", *WHO),
            calls(S3, "PutBucketVersioning", detail=tampering.versioning_suspended),
        ),
        Rule(
            "s3-access-logging-removed",
            "S3 server access logging removed",
            "medium",
            "T1562.008",
            "PutBucketLogging without a logging target: the bucket's accesses are no longer logged.",
            ("requestParameters.bucketName", "requestParameters.BucketLoggingStatus", *WHO),
            calls(S3, "PutBucketLogging", detail=tampering.logging_removed),
        ),
        Rule(
            "cloudwatch-alarms-deleted",
            "CloudWatch alarms deleted or silenced",
            "medium",
            "T1562.001",
            "DeleteAlarms or DisableAlarmActions.",
            ("requestParameters.alarmNames", *WHO),
            calls("monitoring.amazonaws.com", "DeleteAlarms", "DisableAlarmActions"),
        ),
        # -- identity backdoors -----------------------------------------------------------------
        Rule(
            "iam-identity-provider-changed",
            "SAML or OpenID Connect provider created or changed",
            "high",
            "T1484.002",
            "CreateSAMLProvider, UpdateSAMLProvider, CreateOpenIDConnectProvider, a new thumbprint or client "
            "id: an outside identity provider trusted to sign in to the account.",
            ("requestParameters.name", "requestParameters.url", "requestParameters.sAMLProviderArn", *WHO),
            calls(
                IAM,
                "CreateSAMLProvider",
                "UpdateSAMLProvider",
                "CreateOpenIDConnectProvider",
                "UpdateOpenIDConnectProviderThumbprint",
                "AddClientIDToOpenIDConnectProvider",
            ),
        ),
        Rule(
            "identity-center-source-changed",
            "IAM Identity Center identity source changed",
            "high",
            "T1484.002",
            "The directory or external identity provider behind IAM Identity Center associated, replaced, "
            "enabled or disabled: whoever controls it signs in to every assigned account.",
            WHO,
            m.either(
                *(
                    calls(
                        source,
                        "AssociateDirectory",
                        "DisassociateDirectory",
                        "CreateExternalIdPConfigurationForDirectory",
                        "UpdateExternalIdPConfigurationForDirectory",
                        "EnableExternalIdPConfigurationForDirectory",
                        "DisableExternalIdPConfigurationForDirectory",
                        "DeleteExternalIdPConfigurationForDirectory",
                    )
                    for source in ("sso.amazonaws.com", "sso-directory.amazonaws.com")
                )
            ),
        ),
        Rule(
            "console-sign-in-token",
            "Console sign-in token made from access keys",
            "medium",
            "T1550.001",
            "GetSigninToken: temporary credentials (often from an access key) turned into a console session.",
            ("requestParameters.sessionDuration", *WHO),
            calls("signin.amazonaws.com", "GetSigninToken"),
        ),
        Rule(
            "iam-mfa-removed",
            "MFA device deactivated or deleted",
            "medium",
            "T1556.006",
            "DeactivateMFADevice or DeleteVirtualMFADevice: a user's second factor removed.",
            ("requestParameters.userName", "requestParameters.serialNumber", *WHO),
            calls(IAM, "DeactivateMFADevice", "DeleteVirtualMFADevice", detail=m.other_user),
        ),
        Rule(
            "iam-password-policy-deleted",
            "Account password policy deleted",
            "medium",
            "T1556",
            "DeleteAccountPasswordPolicy: any password is accepted again.",
            WHO,
            calls(IAM, "DeleteAccountPasswordPolicy"),
        ),
        Rule(
            "iam-permissions-boundary-removed",
            "Permissions boundary removed",
            "high",
            "T1098",
            "DeleteUserPermissionsBoundary or DeleteRolePermissionsBoundary: the cap on what a user or role may "
            "do lifted.",
            ("requestParameters.userName", "requestParameters.roleName", *WHO),
            calls(
                IAM, "DeleteUserPermissionsBoundary", "DeleteRolePermissionsBoundary", detail=tampering.boundary_removed
            ),
        ),
        # -- quiet tampering with detection ---------------------------------------------------------
        Rule(
            "guardduty-findings-suppressed",
            "GuardDuty findings suppressed",
            "high",
            "T1562.001",
            "A trusted IP list created or changed (no findings for its addresses), or a filter that archives "
            "findings as they arrive.",
            ("requestParameters.detectorId", "requestParameters.name", "requestParameters.action", *WHO),
            calls(
                "guardduty.amazonaws.com",
                "CreateIPSet",
                "UpdateIPSet",
                "CreateFilter",
                "UpdateFilter",
                detail=tampering.findings_archived,
            ),
        ),
        Rule(
            "guardduty-left-administrator",
            "GuardDuty member left its administrator",
            "high",
            "T1562.001",
            "DisassociateFromMasterAccount or DisassociateFromAdministratorAccount: the account's findings no "
            "longer reach the security team.",
            ("requestParameters.detectorId", *WHO),
            calls("guardduty.amazonaws.com", "DisassociateFromMasterAccount", "DisassociateFromAdministratorAccount"),
        ),
        Rule(
            "securityhub-findings-suppressed",
            "Security Hub findings suppressed",
            "medium",
            "T1562.001",
            "BatchUpdateFindings setting the workflow status SUPPRESSED.",
            ("requestParameters.FindingIdentifiers", "requestParameters.Workflow", *WHO),
            calls("securityhub.amazonaws.com", "BatchUpdateFindings", detail=tampering.findings_suppressed),
        ),
        Rule(
            "securityhub-integration-disabled",
            "Security Hub product integration disabled",
            "high",
            "T1562.001",
            "DisableImportFindingsForProduct: a product's findings (GuardDuty, Inspector...) no longer imported.",
            ("requestParameters.ProductSubscriptionArn", *WHO),
            calls("securityhub.amazonaws.com", "DisableImportFindingsForProduct"),
        ),
        Rule(
            "config-rule-deleted",
            "AWS Config rule deleted",
            "medium",
            "T1562.001",
            "DeleteConfigRule, DeleteOrganizationConfigRule or DeleteConformancePack.",
            ("requestParameters.configRuleName", *WHO),
            calls("config.amazonaws.com", "DeleteConfigRule", "DeleteOrganizationConfigRule", "DeleteConformancePack"),
        ),
        Rule(
            "bedrock-guardrail-deleted",
            "Bedrock guardrail deleted",
            "medium",
            "T1562.001",
            "DeleteGuardrail: a model's content filters removed.",
            ("requestParameters.guardrailIdentifier", *WHO),
            calls("bedrock.amazonaws.com", "DeleteGuardrail"),
        ),
        # -- destruction and ransom -------------------------------------------------------------------
        Rule(
            "s3-bucket-deleted",
            "S3 bucket deleted",
            "medium",
            "T1485",
            "DeleteBucket.",
            ("requestParameters.bucketName", *WHO),
            calls(S3, "DeleteBucket"),
        ),
        Rule(
            "rds-database-deleted",
            "RDS database deleted",
            "medium",
            "T1485",
            "DeleteDBInstance or DeleteDBCluster; high without a final snapshot.",
            ("requestParameters.dBInstanceIdentifier", "requestParameters.skipFinalSnapshot", *WHO),
            calls(RDS, "DeleteDBInstance", "DeleteDBCluster", detail=tampering.database_deleted),
        ),
        Rule(
            "efs-file-system-deleted",
            "EFS file system deleted",
            "medium",
            "T1485",
            "DeleteFileSystem.",
            ("requestParameters.fileSystemId", *WHO),
            calls("elasticfilesystem.amazonaws.com", "DeleteFileSystem"),
        ),
        Rule(
            "kms-key-disabled-or-deleted",
            "KMS key disabled or scheduled for deletion",
            "high",
            "T1485",
            "ScheduleKeyDeletion or DisableKey: whatever the key encrypts becomes unreadable (ransom).",
            ("requestParameters.keyId", "requestParameters.pendingWindowInDays", *WHO),
            calls("kms.amazonaws.com", "ScheduleKeyDeletion", "DisableKey"),
        ),
        Rule(
            "ec2-image-deregistered",
            "AMI deregistered",
            "low",
            "T1485",
            "DeregisterImage.",
            ("requestParameters.imageId", *WHO),
            calls(EC2, "DeregisterImage"),
        ),
        Rule(
            "snapshots-deleted",
            "Many snapshots deleted by one principal",
            "high",
            "T1490",
            "DeleteSnapshot, DeleteDBSnapshot or DeleteDBClusterSnapshot of five or more different snapshots "
            "by one principal within 10 minutes: backups destroyed.",
            ("requestParameters.snapshotId", "requestParameters.dBSnapshotIdentifier", *WHO),
            m.either(calls(EC2, "DeleteSnapshot"), calls(RDS, "DeleteDBSnapshot", "DeleteDBClusterSnapshot")),
            _burst(m.by_principal, 600, 5, "different snapshots deleted", distinct=tampering.snapshot_ids),
        ),
        # -- network exposure beyond ingress ---------------------------------------------------------
        Rule(
            "vpc-route-to-internet",
            "Default route to an internet gateway",
            "medium",
            "T1599",
            "CreateRoute or ReplaceRoute of 0.0.0.0/0 or ::/0 through an internet gateway: the subnet's "
            "instances reachable from and able to reach the internet.",
            ("requestParameters.routeTableId", "requestParameters.gatewayId", *WHO),
            calls(EC2, "CreateRoute", "ReplaceRoute", detail=exposure.internet_route),
        ),
        Rule(
            "security-group-egress-to-internet",
            "Security group egress opened to the internet",
            "low",
            "T1048",
            "AuthorizeSecurityGroupEgress to 0.0.0.0/0 or ::/0: a way out for exfiltration.",
            ("requestParameters.groupId", "requestParameters.ipPermissions", *WHO),
            calls(EC2, "AuthorizeSecurityGroupEgress", detail=exposure.internet_egress),
        ),
        Rule(
            "network-acl-allow-all",
            "Network ACL allows all traffic from or to anywhere",
            "medium",
            "T1562.007",
            "CreateNetworkAclEntry or ReplaceNetworkAclEntry allowing every protocol for 0.0.0.0/0 or ::/0.",
            ("requestParameters.networkAclId", "requestParameters.cidrBlock", *WHO),
            calls(EC2, "CreateNetworkAclEntry", "ReplaceNetworkAclEntry", detail=exposure.network_acl_allow_all),
        ),
        # -- stolen instance credentials, slow enumeration, offensive tools -------------------------
        Rule(
            "instance-credentials-elsewhere",
            "Instance credentials used from a second address or client",
            "high",
            "T1552.005",
            "An EC2 instance profile session called from a second source address, public or private, or with "
            "a browser or an offensive tool: its credentials are being used off the instance. An instance "
            "calling some services through a VPC endpoint and others through a NAT gateway also has two "
            "addresses; suppress the rule for that principal.",
            ("userIdentity.arn", "sourceIPAddress", "userAgent"),
            correlate=lambda: InstanceSessionElsewhere(tool),
        ),
        Rule(
            "discovery-slow",
            "Slow enumeration by one principal",
            "low",
            "T1580",
            "Fifty or more different List, Describe or Get APIs called by one principal within 10 minutes, "
            "outside the console: enumeration paced to stay under the one-minute burst.",
            ("eventSource", "eventName", *WHO),
            m.enumeration_call,
            _burst(m.by_principal, 600, 50, "different read APIs", distinct=m.api_of),
        ),
        Rule(
            "offensive-tool-user-agent",
            "Offensive security tool in use",
            "high",
            "T1580",
            "Calls whose user agent names TruffleHog, Pacu, S3 Browser, CloudFox, ScoutSuite, Prowler, "
            "CloudSploit or an offensive Linux distribution, unless listed in INSIGHTS_EXPECTED_TOOLS. One hit "
            "per principal, tool and hour.",
            ("eventSource", "eventName", *WHO),
            _offensive(tool),
            _burst(_by_principal_and_tool(tool), 3600, 1, "calls"),
        ),
    )


def rules(
    org_accounts: Collection[str] = (),
    log_expiry_days: float = DEFAULT_LOG_EXPIRY_DAYS,
    expected_tools: Collection[str] = (),
) -> tuple[Rule, ...]:
    """The rule table. ``org_accounts`` are the organisation's own accounts: sharing with them
    is not sharing outside. ``log_expiry_days``: a lifecycle rule deleting objects within this
    many days fires. ``expected_tools``: offensive-tool names (``prowler``) the team runs itself."""
    trusted = frozenset(org_accounts)
    tool = offensive_tool(expected_tools)
    return (
        # -- root and sign-in ---------------------------------------------------------------------
        Rule(
            "root-activity",
            "Root user activity",
            "medium",
            "T1078.004",
            "Calls made with the root user's credentials (AWS service events excluded). Root should be "
            "locked away; one hit per account and hour lists what it did.",
            ("eventName", *WHO),
            m.root_activity,
            _burst(m.by_account, 3600, 1, "root calls"),
        ),
        Rule(
            "root-console-login",
            "Root console sign-in",
            "high",
            "T1078.004",
            "A console sign-in as root, successful or not.",
            ("additionalEventData.MFAUsed", "responseElements.ConsoleLogin", *WHO),
            m.root_console_login,
        ),
        Rule(
            "console-login-without-mfa",
            "Console sign-in without MFA",
            "medium",
            "T1078.004",
            "An IAM user or root signed in to the console without MFA. Sign-ins through SSO, SAML or "
            "web identity are left out: MFA is their identity provider's business.",
            ("additionalEventData.MFAUsed", "additionalEventData.LoginTo", *WHO),
            m.console_login_without_mfa,
        ),
        Rule(
            "console-login-failures-user",
            "Repeated failed console sign-ins for one user",
            "medium",
            "T1110.001",
            "Five or more failed console sign-ins for one user within 5 minutes: password guessing.",
            ("errorMessage", "responseElements.ConsoleLogin", *WHO),
            m.console_login_failure,
            _burst(m.by_principal, 300, 5, "failed sign-ins for one user"),
        ),
        Rule(
            "console-login-failures-ip",
            "Repeated failed console sign-ins from one address",
            "medium",
            "T1110.003",
            "Five or more failed console sign-ins from one source address within 5 minutes: "
            "password guessing or spraying across users.",
            ("errorMessage", "responseElements.ConsoleLogin", *WHO),
            m.console_login_failure,
            _burst(m.by_source_ip, 300, 5, "failed sign-ins from one address"),
        ),
        Rule(
            "access-denied-spike",
            "Spike of access-denied errors",
            "medium",
            "T1580",
            "Ten or more AccessDenied or UnauthorizedOperation errors by one principal within 5 "
            "minutes: credentials probing what they may do. Denied calls already in a hit of a rule for "
            "that call (password data, user data...) are left to it: one action, one hit.",
            ("eventSource", "eventName", "errorCode", *WHO),
            m.access_denied,
            _burst(m.by_principal, 300, 10, "denied calls by one principal"),
            catch_all=True,
        ),
        Rule(
            "discovery-burst",
            "Burst of enumeration calls",
            "low",
            "T1580",
            "Twenty or more different List, Describe or Get APIs called by one principal within a "
            "minute, outside the console: a leaked key being explored, or an inventory tool "
            "(infrastructure-as-code plans and security scanners look the same).",
            ("eventSource", "eventName", *WHO),
            m.enumeration_call,
            _burst(m.by_principal, 60, 20, "different read APIs", distinct=m.api_of),
        ),
        # -- IAM persistence ----------------------------------------------------------------------
        Rule(
            "iam-user-created",
            "IAM user created",
            "medium",
            "T1136.003",
            "A new IAM user: long-term credentials for whoever controls it.",
            ("requestParameters.userName", *WHO),
            calls(IAM, "CreateUser"),
        ),
        Rule(
            "iam-access-key-created",
            "IAM access key created",
            "medium",
            "T1098.001",
            "A new access key, for the caller or for another user (a backdoor key).",
            ("requestParameters.userName", "responseElements.accessKey.accessKeyId", *WHO),
            calls(IAM, "CreateAccessKey", detail=m.other_user),
        ),
        Rule(
            "iam-login-profile-changed",
            "Console password created or changed for a user",
            "high",
            "T1098",
            "CreateLoginProfile or UpdateLoginProfile: a console password set for a user, often "
            "another user's, to sign in as them.",
            ("requestParameters.userName", "requestParameters.passwordResetRequired", *WHO),
            calls(IAM, "CreateLoginProfile", "UpdateLoginProfile", detail=m.other_user),
        ),
        Rule(
            "iam-admin-policy-granted",
            "Administrator permissions granted",
            "high",
            "T1098.003",
            "AdministratorAccess or IAMFullAccess attached, or an inline policy allowing every action "
            "on every resource, to a user, role or group.",
            ("requestParameters.policyArn", "requestParameters.policyName", "requestParameters.userName", *WHO),
            calls(
                IAM,
                "AttachUserPolicy",
                "AttachRolePolicy",
                "AttachGroupPolicy",
                "PutUserPolicy",
                "PutRolePolicy",
                "PutGroupPolicy",
                detail=m.admin_grant,
            ),
        ),
        Rule(
            "iam-policy-changed",
            "IAM policy attached, detached or written",
            "medium",
            "T1098.003",
            "Managed policies attached to or detached from users, roles and groups, and inline "
            "policies written (administrator grants are their own rule). One hit per principal and hour.",
            ("requestParameters.policyArn", "requestParameters.policyName", "requestParameters.roleName", *WHO),
            calls(
                IAM,
                "AttachUserPolicy",
                "AttachRolePolicy",
                "AttachGroupPolicy",
                "PutUserPolicy",
                "PutRolePolicy",
                "PutGroupPolicy",
                "DetachUserPolicy",
                "DetachRolePolicy",
                "DetachGroupPolicy",
                detail=m.policy_change,
            ),
            _burst(m.by_principal, 3600, 1, "policy changes"),
        ),
        Rule(
            "iam-role-trusts-external-account",
            "Role made assumable from another account",
            "high",
            "T1098.003",
            "A role created or its trust policy changed so that another account, or anyone, may assume it.",
            ("requestParameters.roleName", "requestParameters.policyDocument", *WHO),
            calls(IAM, "CreateRole", "UpdateAssumeRolePolicy", detail=m.external_trust(trusted)),
        ),
        Rule(
            "iam-role-trust-changed",
            "Role trust policy changed",
            "medium",
            "T1098.003",
            "UpdateAssumeRolePolicy: who may assume the role changed (within the account).",
            ("requestParameters.roleName", "requestParameters.policyDocument", *WHO),
            calls(IAM, "UpdateAssumeRolePolicy", detail=m.trust_change(trusted)),
        ),
        Rule(
            "iam-policy-version-default",
            "New default policy version",
            "medium",
            "T1098.003",
            "A managed policy's permissions replaced: CreatePolicyVersion with setAsDefault, or "
            "SetDefaultPolicyVersion. Deployments do this with every policy change: one hit per principal and hour.",
            ("requestParameters.policyArn", "requestParameters.setAsDefault", *WHO),
            calls(IAM, "CreatePolicyVersion", "SetDefaultPolicyVersion", detail=m.set_as_default),
            _burst(m.by_principal, 3600, 1, "new default policy versions"),
        ),
        Rule(
            "iam-user-added-to-group",
            "User added to a group",
            "medium",
            "T1098.003",
            "AddUserToGroup: a user gains the group's permissions.",
            ("requestParameters.userName", "requestParameters.groupName", *WHO),
            calls(IAM, "AddUserToGroup"),
        ),
        Rule(
            "sts-federation-token",
            "Federation token issued",
            "medium",
            "T1550.001",
            "GetFederationToken: temporary credentials from an IAM user's key that outlive the key's deactivation.",
            ("requestParameters.name", "requestParameters.policy", *WHO),
            calls("sts.amazonaws.com", "GetFederationToken"),
        ),
        Rule(
            "rolesanywhere-trust-anchor",
            "IAM Roles Anywhere trust anchor or profile created",
            "high",
            "T1098",
            "A certificate authority trusted to hand out role credentials outside AWS.",
            ("requestParameters.name", "requestParameters.roleArns", *WHO),
            calls("rolesanywhere.amazonaws.com", "CreateTrustAnchor", "UpdateTrustAnchor", "CreateProfile"),
        ),
        # -- logging and defences -----------------------------------------------------------------
        Rule(
            "cloudtrail-stopped",
            "CloudTrail logging stopped",
            "critical",
            "T1562.008",
            "StopLogging: the trail records nothing from now on.",
            ("requestParameters.name", *WHO),
            calls("cloudtrail.amazonaws.com", "StopLogging"),
        ),
        Rule(
            "cloudtrail-deleted",
            "CloudTrail trail deleted",
            "critical",
            "T1562.008",
            "DeleteTrail.",
            ("requestParameters.name", *WHO),
            calls("cloudtrail.amazonaws.com", "DeleteTrail"),
        ),
        Rule(
            "cloudtrail-changed",
            "CloudTrail trail or event selectors changed",
            "high",
            "T1562.008",
            "UpdateTrail or PutEventSelectors: what the trail records, or where, changed.",
            ("requestParameters.trailName", "requestParameters.name", "requestParameters.eventSelectors", *WHO),
            calls("cloudtrail.amazonaws.com", "UpdateTrail", "PutEventSelectors", detail=m.event_selectors),
        ),
        Rule(
            "vpc-flow-logs-deleted",
            "VPC flow logs deleted",
            "high",
            "T1562.008",
            "DeleteFlowLogs.",
            ("requestParameters.DeleteFlowLogsRequest", *WHO),
            calls(EC2, "DeleteFlowLogs"),
        ),
        Rule(
            "dns-query-logging-removed",
            "Route 53 Resolver query logging removed",
            "high",
            "T1562.008",
            "DeleteResolverQueryLogConfig or DisassociateResolverQueryLogConfig: DNS queries no longer logged.",
            ("requestParameters.resolverQueryLogConfigId", *WHO),
            calls(
                "route53resolver.amazonaws.com", "DeleteResolverQueryLogConfig", "DisassociateResolverQueryLogConfig"
            ),
        ),
        Rule(
            "guardduty-disabled",
            "GuardDuty disabled",
            "high",
            "T1562.001",
            "A GuardDuty detector deleted or disabled.",
            ("requestParameters.detectorId", "requestParameters.enable", *WHO),
            calls("guardduty.amazonaws.com", "DeleteDetector", "UpdateDetector", detail=m.guardduty_disabled),
        ),
        Rule(
            "securityhub-disabled",
            "Security Hub disabled",
            "high",
            "T1562.001",
            "DisableSecurityHub.",
            WHO,
            calls("securityhub.amazonaws.com", "DisableSecurityHub"),
        ),
        Rule(
            "config-recorder-stopped",
            "AWS Config recording stopped",
            "high",
            "T1562.001",
            "StopConfigurationRecorder, DeleteConfigurationRecorder or DeleteDeliveryChannel.",
            ("requestParameters.configurationRecorderName", *WHO),
            calls(
                "config.amazonaws.com",
                "StopConfigurationRecorder",
                "DeleteConfigurationRecorder",
                "DeleteDeliveryChannel",
            ),
        ),
        Rule(
            "organization-left",
            "Account left its organization",
            "critical",
            "T1666",
            "LeaveOrganization: the organization's guardrails (SCPs, central trails) no longer apply.",
            WHO,
            calls("organizations.amazonaws.com", "LeaveOrganization"),
        ),
        # -- network exposure ---------------------------------------------------------------------
        Rule(
            "security-group-open-to-internet",
            "Security group opened to the internet",
            "high",
            "T1562.007",
            "An ingress rule for every address (0.0.0.0/0 or ::/0); the summary says which ports.",
            (
                "requestParameters.groupId",
                "requestParameters.ipPermissions",
                "responseElements.securityGroupRuleSet",
                *WHO,
            ),
            calls(EC2, "AuthorizeSecurityGroupIngress", detail=m.internet_ingress),
        ),
        # -- sharing and exfiltration -------------------------------------------------------------
        Rule(
            "ec2-snapshot-shared",
            "EBS snapshot shared outside the account",
            "high",
            "T1537",
            "ModifySnapshotAttribute granting createVolumePermission to another account or to everyone.",
            ("requestParameters.snapshotId", "requestParameters.createVolumePermission", *WHO),
            calls(EC2, "ModifySnapshotAttribute", detail=m.ec2_shared("createVolumePermission", trusted)),
        ),
        Rule(
            "ec2-image-shared",
            "AMI shared outside the account",
            "high",
            "T1537",
            "ModifyImageAttribute granting launchPermission to another account, organization or everyone.",
            ("requestParameters.imageId", "requestParameters.launchPermission", *WHO),
            calls(EC2, "ModifyImageAttribute", detail=m.ec2_shared("launchPermission", trusted)),
        ),
        Rule(
            "rds-snapshot-shared",
            "RDS snapshot shared outside the account",
            "high",
            "T1537",
            "ModifyDBSnapshotAttribute or ModifyDBClusterSnapshotAttribute adding accounts (or all) "
            "to the restore attribute.",
            ("requestParameters.dBSnapshotIdentifier", "requestParameters.valuesToAdd", *WHO),
            calls(
                "rds.amazonaws.com",
                "ModifyDBSnapshotAttribute",
                "ModifyDBClusterSnapshotAttribute",
                detail=m.rds_shared(trusted),
            ),
        ),
        # -- credential access --------------------------------------------------------------------
        Rule(
            "ec2-password-data",
            "EC2 Windows password data requested",
            "medium",
            "T1552",
            "GetPasswordData: the encrypted administrator password of Windows instances. One hit per "
            "principal and 10 minutes.",
            ("requestParameters.instanceId", *WHO),
            calls(EC2, "GetPasswordData"),
            _burst(m.by_principal, 600, 1, "password data requests"),
        ),
        Rule(
            "secrets-bulk-read",
            "Many secrets read by one principal",
            "high",
            "T1555.006",
            "GetSecretValue of five or more different secrets by one principal within 10 minutes.",
            ("requestParameters.secretId", *WHO),
            calls("secretsmanager.amazonaws.com", "GetSecretValue"),
            _burst(m.by_principal, 600, 5, "different secrets read", distinct=m.secret_ids),
        ),
        Rule(
            "secrets-batch-read",
            "Secrets read in batches",
            "medium",
            "T1555.006",
            "BatchGetSecretValue: many secrets in one call, by id list or by filter. One hit per principal and "
            "10 minutes.",
            ("requestParameters.secretIdList", "requestParameters.filters", *WHO),
            calls("secretsmanager.amazonaws.com", "BatchGetSecretValue"),
            _burst(m.by_principal, 600, 1, "batch secret reads"),
        ),
        Rule(
            "ssm-secure-parameters-read",
            "Many SecureString parameters decrypted",
            "medium",
            "T1555.006",
            "GetParameter, GetParameters or GetParametersByPath with decryption of ten or more "
            "different parameters by one principal within 10 minutes.",
            ("requestParameters.names", "requestParameters.name", "requestParameters.withDecryption", *WHO),
            calls(
                "ssm.amazonaws.com", "GetParameter", "GetParameters", "GetParametersByPath", detail=m.with_decryption
            ),
            _burst(m.by_principal, 600, 10, "different parameters decrypted", distinct=m.decrypted_parameters),
        ),
        Rule(
            "instance-credentials-public-ip",
            "Instance credentials used from an internet address",
            "low",
            "T1552.005",
            "An EC2 instance profile session (named after its instance) calling from a public address "
            "with a non-AWS client. Normal for instances without VPC endpoints; worth a look when the "
            "address is not the instance's. One hit per session, address and hour.",
            ("userIdentity.arn", "sourceIPAddress", "userAgent"),
            m.instance_credentials_public,
            _burst(m.by_session_and_ip, 3600, 1, "calls"),
        ),
        Rule(
            "instance-credentials-shared-address",
            "Instance credentials used where an access key is used",
            "high",
            "T1552.005",
            "An EC2 instance profile session calling from a public address that an IAM user's or "
            "root's long-term credentials also called from within an hour: instance credentials taken "
            "to the attacker's machine.",
            ("userIdentity.arn", "sourceIPAddress", "userAgent"),
            correlate=InstanceCredentialsElsewhere,
        ),
        # -- execution and lateral movement -------------------------------------------------------
        Rule(
            "ssm-send-command",
            "Command sent to instances with SSM",
            "medium",
            "T1651",
            "SendCommand: a script run on instances as root or SYSTEM.",
            ("requestParameters.documentName", "requestParameters.instanceIds", *WHO),
            calls("ssm.amazonaws.com", "SendCommand"),
        ),
        Rule(
            "ssm-start-session",
            "SSM session started on an instance",
            "low",
            "T1651",
            "StartSession: an interactive shell on an instance.",
            ("requestParameters.target", *WHO),
            calls("ssm.amazonaws.com", "StartSession"),
        ),
        Rule(
            "ec2-instance-connect-key",
            "SSH key pushed with EC2 Instance Connect",
            "medium",
            "T1021.004",
            "SendSSHPublicKey: a key valid for 60 seconds to log in to an instance.",
            ("requestParameters.instanceId", "requestParameters.instanceOSUser", *WHO),
            calls("ec2-instance-connect.amazonaws.com", "SendSSHPublicKey"),
        ),
        Rule(
            "ec2-serial-console-key",
            "SSH key pushed for the EC2 serial console",
            "high",
            "T1021.004",
            "SendSerialConsoleSSHPublicKey: console access to an instance that bypasses its network.",
            ("requestParameters.instanceId", "requestParameters.serialPort", *WHO),
            calls("ec2-instance-connect.amazonaws.com", "SendSerialConsoleSSHPublicKey"),
        ),
        Rule(
            "ec2-serial-console-enabled",
            "EC2 serial console access enabled",
            "medium",
            "T1021.004",
            "EnableSerialConsoleAccess for the account and region.",
            WHO,
            calls(EC2, "EnableSerialConsoleAccess"),
        ),
        Rule(
            "ec2-user-data-modified",
            "Instance user data replaced",
            "high",
            "T1059.009",
            "ModifyInstanceAttribute setting userData: a script that runs as root at the next start.",
            ("requestParameters.instanceId", *WHO),
            calls(EC2, "ModifyInstanceAttribute", detail=m.user_data_set),
        ),
        unusual_instances_rule(),
        Rule(
            "lambda-code-updated",
            "Lambda code or layer published",
            "low",
            "T1648",
            "UpdateFunctionCode or PublishLayerVersion: new code that runs with the function's role. "
            "Routine for deployments: one hit per principal and hour.",
            ("requestParameters.functionName", "requestParameters.layerName", *WHO),
            calls(LAMBDA, "UpdateFunctionCode", "PublishLayerVersion"),
            _burst(m.by_principal, 3600, 1, "code updates"),
        ),
        Rule(
            "lambda-layer-added",
            "Layers set on a Lambda function",
            "medium",
            "T1648",
            "UpdateFunctionConfiguration with layers: code (an extension) that runs inside the function.",
            ("requestParameters.functionName", "requestParameters.layers", *WHO),
            calls(LAMBDA, "UpdateFunctionConfiguration", detail=m.layers_added),
        ),
        Rule(
            "lambda-public-access",
            "Lambda function opened to anyone",
            "high",
            "T1648",
            "AddPermission for principal * (without a source condition) or for an unauthenticated "
            "function URL, or a function URL created or changed with AuthType NONE.",
            ("requestParameters.functionName", "requestParameters.principal", "requestParameters.authType", *WHO),
            calls(
                LAMBDA, "AddPermission", "CreateFunctionUrlConfig", "UpdateFunctionUrlConfig", detail=m.public_lambda
            ),
        ),
        # -- discovery and impact -----------------------------------------------------------------
        Rule(
            "ec2-user-data-read",
            "User data of many instances read",
            "medium",
            "T1580",
            "DescribeInstanceAttribute for userData of five or more instances by one principal within "
            "10 minutes: looking for secrets in boot scripts.",
            ("requestParameters.instanceId", "requestParameters.attribute", *WHO),
            calls(EC2, "DescribeInstanceAttribute", detail=m.user_data_attribute),
            _burst(m.by_principal, 600, 5, "instances' user data read", distinct=m.instance_id),
        ),
        Rule(
            "bedrock-model-access-enabled",
            "Bedrock model access enabled",
            "medium",
            "T1496",
            "A foundation model agreement, entitlement or use case submitted: the first step of LLMjacking.",
            ("requestParameters.modelId", *WHO),
            calls(
                "bedrock.amazonaws.com",
                "CreateFoundationModelAgreement",
                "PutFoundationModelEntitlement",
                "PutUseCaseForModelAccess",
            ),
        ),
        Rule(
            "bedrock-model-invoked",
            "Bedrock model invoked",
            "low",
            "T1496",
            "InvokeModel or Converse calls. One hit per principal and hour.",
            ("requestParameters.modelId", *WHO),
            calls(
                "bedrock.amazonaws.com", "InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream"
            ),
            _burst(m.by_principal, 3600, 1, "model invocations"),
        ),
        # -- first seen ---------------------------------------------------------------------------
        Rule(
            "first-seen-region",
            "Activity in a new region",
            "low",
            "T1535",
            "The first event of an account in a region, after the account's learning period.",
            ("awsRegion", "eventName", *WHO),
            first_seen=FirstSeen(account_of, _region, "region"),
        ),
        Rule(
            "first-seen-source-ip",
            "Principal calling from a new address",
            "low",
            "T1078.004",
            "The first call of a principal from a source address, after its learning period.",
            WHO,
            first_seen=FirstSeen(_principal, _address, "source address"),
        ),
        Rule(
            "first-seen-api",
            "Principal calling a new API",
            "info",
            "T1078.004",
            "The first call of a principal to an API (service:name), after its learning period.",
            ("eventSource", "eventName", *WHO),
            first_seen=FirstSeen(_principal, _api, "API"),
        ),
        Rule(
            "first-seen-user-agent",
            "Principal using a new client",
            "low",
            "T1078.004",
            "The first call of a principal with a client family (aws-cli, boto3, console, terraform...), "
            "after its learning period.",
            WHO,
            first_seen=FirstSeen(_principal, _agent, "client"),
        ),
        *_coverage(trusted, log_expiry_days, tool),
    )


RULES: tuple[Rule, ...] = rules()
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
assert len(RULES_BY_ID) == len(RULES), "rule ids must be unique"
