#!/usr/bin/env python3
"""Checks the deployment recipes (deploy/, Dockerfile, docs/policies/) against
their validators, against moto's CloudFormation, and against the binary's own
argument parser, so that they cannot drift from the product.

    scripts/check-deploy.py [--binary target/debug/iam-rotate]

Run by scripts/test.sh with the test venv's Python (boto3, moto, cfn-lint,
check-jsonschema and kubernetes-validate, pinned in
scripts/requirements-test.txt). Prints one line per check and ends with
`deploy: N passed, M failed`; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "deploy/github-actions/rotate.yml"
MAIN_TEMPLATE = ROOT / "deploy/aws/iam-rotate.yaml"
MEMBER_TEMPLATE = ROOT / "deploy/aws/member-role.yaml"
CRONJOB = ROOT / "deploy/kubernetes/cronjob.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY_DOC = ROOT / "docs/deploy.md"
POLICIES = ROOT / "docs/policies"

# Global flags the recipes are written for that the binary does not parse
# yet (docs/deploy.md, "Which release the recipes need"), each with
# a sample value. Each is checked to be still unknown to the binary: when
# one lands, that check fails until the flag is taken out of here and out
# of the table in docs/deploy.md, and from then on the recipes' use of it is
# parsed like every other flag's.
PENDING_FLAGS: dict[str, list[str]] = {}
# Plans in S3 (`--plans-dir s3://BUCKET/PREFIX`) parse today as a folder
# name; the release that reads them says so in --help.
S3_PLANS_PENDING = False

# Resource types of the templates that moto's CloudFormation skips (it
# creates every other one); checked against moto's own list so a moto
# upgrade that adds one shows up here. Their properties are validated by
# cfn-lint and their references by `template_wiring`.
MOTO_SKIPS = {
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::SNS::TopicPolicy",
    "AWS::Scheduler::Schedule",
    "AWS::EKS::PodIdentityAssociation",
}

# Values for the workflow's `workflow_dispatch` inputs whose default is
# empty, so that the commands using them can be parsed.
SAMPLE_INPUTS = {"plan-older-than": "90d"}

# Actions that have no resource to scope: the only ones allowed `"*"`.
UNSCOPABLE_ACTIONS = {"organizations:ListAccounts", "iam:ListUsers", "ecr:GetAuthorizationToken"}

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"


# --------------------------------------------------------------------------
# CloudFormation YAML with its short-form tags (!Ref, !Sub, ...)


class CfnLoader(yaml.SafeLoader):
    """Reads a template's short-form functions as their long form."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=CfnLoader)


def resolve(value, parameters: dict):
    """A template value with Refs to parameters replaced by their values;
    anything else (pseudo parameters, resources) stays as it is."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters:
        return parameters[value["Ref"]]
    if isinstance(value, dict):
        return {k: resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, parameters) for v in value]
    return value


def defaults(template: dict) -> dict:
    return {
        name: str(p["Default"])
        for name, p in template.get("Parameters", {}).items()
        if "Default" in p
    }


# --------------------------------------------------------------------------
# The checks. Each raises AssertionError with what is wrong.

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def venv_tool(name: str) -> str:
    """A console script of the Python running this file (the test venv)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed: pip install -r scripts/requirements-test.txt"
    return found


def run_tool(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT)


@check
def cfn_lint_accepts_both_templates(ctx):
    done = run_tool([venv_tool("cfn-lint"), str(MAIN_TEMPLATE), str(MEMBER_TEMPLATE)])
    assert done.returncode == 0, f"cfn-lint:\n{done.stdout}{done.stderr}"
    # Control: the same linter on a template with a misspelt property fails.
    broken = MAIN_TEMPLATE.read_text().replace(
        "ReadonlyRootFilesystem:", "ReadOnlyRootFileSystem:", 1
    )
    assert broken != MAIN_TEMPLATE.read_text(), "the control's misspelling found nothing to change"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as bad:
        bad.write(broken)
        bad.flush()
        control = run_tool([venv_tool("cfn-lint"), bad.name])
    assert control.returncode != 0, "cfn-lint passed a misspelt property: it checks nothing"


@check
def workflow_matches_githubs_schema(ctx):
    tool = venv_tool("check-jsonschema")
    done = run_tool([tool, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)])
    assert done.returncode == 0, f"check-jsonschema:\n{done.stdout}{done.stderr}"
    broken = WORKFLOW.read_text().replace("cancel-in-progress: false", "cancel-in-progres: false")
    assert broken != WORKFLOW.read_text(), "the control's misspelling found nothing to change"
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as bad:
        bad.write(broken)
        bad.flush()
        control = run_tool([tool, "--builtin-schema", "vendor.github-workflows", bad.name])
    assert control.returncode != 0, "the workflow schema passed a misspelt key: it checks nothing"


@check
def workflow_has_schedule_dispatch_concurrency_and_oidc(ctx):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on:` as true
    assert on["schedule"][0]["cron"], "a cron schedule"
    assert "workflow_dispatch" in on
    assert workflow["concurrency"]["group"], "a concurrency group"
    assert (
        workflow["concurrency"]["cancel-in-progress"] is False
    ), "a run in progress is never cancelled"
    assert workflow["permissions"] == {}, "no permissions at the top; the job asks for its own"
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"id-token": "write", "contents": "read"}, job["permissions"]
    steps = job["steps"]
    uses = [s["uses"] for s in steps if "uses" in s]
    assert len(uses) == 1 and uses[0].startswith("aws-actions/configure-aws-credentials@"), uses
    assert re.fullmatch(
        r"aws-actions/configure-aws-credentials@[0-9a-f]{40}", uses[0]
    ), "the action is pinned by commit"
    creds = next(s for s in steps if "uses" in s)["with"]
    assert "role-to-assume" in creds and "aws-access-key-id" not in creds, "OIDC, no stored keys"
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "status --needs-attention" in scripts, "the alerting step"
    alert = next(s for s in steps if "--needs-attention" in s.get("run", ""))
    assert alert.get("if") == "${{ !cancelled() }}", "the alert runs even when `run` failed"
    assert "secrets." not in WORKFLOW.read_text(), "the workflow reads no GitHub secret"
    assert job["env"]["IAM_ROTATE_PLANS_DIR"] == "${{ vars.IAM_ROTATE_PLANS_DIR }}"


@check
def kubernetes_manifest_matches_the_api_schema(ctx):
    done = run_tool([venv_tool("kubernetes-validate"), "--strict", "--quiet", str(CRONJOB)])
    assert done.returncode == 0, f"kubernetes-validate:\n{done.stdout}{done.stderr}"


@check
def cronjob_is_forbid_nonroot_readonly_limited_and_keyless(ctx):
    docs = [d for d in yaml.safe_load_all(CRONJOB.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert "Secret" not in kinds, "no Secret in the manifest"
    cron = kinds["CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    account = kinds["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False, "no Kubernetes API token"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    containers = pod.get("initContainers", []) + pod["containers"]
    for c in containers:
        name = c["name"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert set(c["resources"]["limits"]) >= {"cpu", "memory"}, name
        assert set(c["resources"]["requests"]) >= {"cpu", "memory"}, name
        assert "command" not in c, f"{name}: the image's entrypoint is iam-rotate"
        for env in c.get("env", []):
            assert "valueFrom" not in env or "secretKeyRef" not in env["valueFrom"], name
        for source in c.get("envFrom", []):
            assert "secretRef" not in source, name
    assert [c["args"][-2:] for c in pod["containers"]] == [["status", "--needs-attention"]]
    config = kinds["ConfigMap"]["data"]
    assert config["IAM_ROTATE_PLANS_DIR"].startswith("s3://"), "plans in S3"
    for name in config:
        assert not name.startswith("AWS_") or name == "AWS_REGION", f"{name} in the manifest"


@check
def no_recipe_holds_a_credential(ctx):
    paths = [WORKFLOW, MAIN_TEMPLATE, MEMBER_TEMPLATE, CRONJOB, DOCKERFILE, DEPLOY_DOC]
    paths += sorted(POLICIES.glob("*.json"))
    for path in paths:
        text = path.read_text()
        assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), f"{path}: an access key id"
        for word in re.findall(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", text):
            shaped = (
                re.search("[A-Z]", word) and re.search("[a-z]", word) and re.search("[0-9]", word)
            )
            assert not shaped, f"{path}: {word[:4]}... is shaped like a secret access key"
        assert not re.search(
            r"AWS_SECRET_ACCESS_KEY\s*[:=]\s*\S", text
        ), f"{path}: a secret's value"


# ---------------------------------------------------------------- policies


def policy(name: str) -> dict:
    return json.loads((POLICIES / name).read_text())


def statements_by_sid(document: dict) -> dict:
    return {s["Sid"]: s for s in document["Statement"]}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@check
def policies_are_well_formed_and_scoped(ctx):
    for name in ["org-runner.json", "member-role.json"]:
        document = policy(name)
        assert document["Version"] == "2012-10-17", name
        sids = [s["Sid"] for s in document["Statement"]]
        assert len(sids) == len(set(sids)), f"{name}: a Sid twice"
        for s in document["Statement"]:
            assert s["Effect"] == "Allow", f"{name}: only grants"
            assert set(s) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, s["Sid"]
            for action in as_list(s["Action"]):
                assert re.fullmatch(
                    r"[a-z0-9-]+:[A-Za-z]+", action
                ), f"{name}: {action} is a wildcard"
                for resource in as_list(s["Resource"]):
                    if resource == "*":
                        assert action in UNSCOPABLE_ACTIONS, f"{name}: {action} on *"
                    else:
                        assert resource.startswith("arn:aws:"), f"{name}: {resource}"
    runner = statements_by_sid(policy("org-runner.json"))
    actions = sorted(a for s in runner.values() for a in as_list(s["Action"]))
    assert actions == [
        "organizations:ListAccounts",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:PutObject",
        "sts:AssumeRole",
    ], actions
    for s in runner.values():
        if s["Action"].startswith("s3:"):
            assert "PLANS_BUCKET" in s["Resource"], s["Sid"]
        if s["Action"] == "s3:PutObject":
            [(key, want)] = s["Condition"]["Null"].items()
            assert key in {"s3:if-none-match", "s3:if-match"} and want == "false", s["Sid"]
    assert runner["AssumeTheMemberAccountRole"]["Resource"] == "arn:aws:iam::*:role/IamRotate"
    assert runner["ReleaseLeases"]["Resource"].endswith("/*.lock"), "plans are never deleted"
    # The member role is operator.json plus the Secrets Manager delivery.
    member = statements_by_sid(policy("member-role.json"))
    operator = statements_by_sid(policy("operator.json"))
    delivery = statements_by_sid(policy("delivery-secretsmanager.json"))
    assert {k: member[k] for k in operator} == operator
    sid = "WriteReadBackAndUndoTheSecret"
    assert set(member) == set(operator) | {sid}
    assert member[sid] == delivery[sid]


def rendered(name: str, substitutions: list[tuple[str, str]]) -> dict:
    text = (POLICIES / name).read_text()
    for old, new in substitutions:
        text = text.replace(old, new)
    return json.loads(text)


@check
def template_wiring(ctx):
    """What moto cannot create is still wired right: the schedule starts this
    task definition on this cluster with a role that may pass exactly the
    task's roles; the alerts reach the topic."""
    template = load_template(MAIN_TEMPLATE)
    r = template["Resources"]
    schedule = r["Schedule"]["Properties"]
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["Cluster", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    ecs = target["EcsParameters"]
    assert ecs["TaskDefinitionArn"] == {"Ref": "TaskDefinition"}
    assert ecs["LaunchType"] == "FARGATE"
    network = ecs["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == {"Ref": "SubnetIds"}
    assert network["SecurityGroups"] == [{"Ref": "TaskSecurityGroup"}]
    assert schedule["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    task = r["TaskDefinition"]["Properties"]
    family = task["Family"]
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["TaskRoleArn"] == {
        "Fn::GetAtt": ["RunnerRole", "Arn"]
    }, "the task runs as the runner"
    scheduler_policy = r["SchedulerRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    by_sid = statements_by_sid(scheduler_policy)
    run_task = by_sid["RunTheTaskOnThisCluster"]
    assert run_task["Resource"]["Fn::Sub"].endswith(f":task-definition/{family}:*")
    passed = by_sid["PassTheTasksRoles"]["Resource"]
    assert sorted(map(json.dumps, passed)) == sorted(
        map(json.dumps, [task["TaskRoleArn"], task["ExecutionRoleArn"]])
    )
    for rule in ["AlertOnFailedRun", "AlertOnTaskThatDidNotStart"]:
        [t] = r[rule]["Properties"]["Targets"]
        assert t["Arn"] == {"Ref": "AlertTopic"}, rule
    assert {"Fn::GetAtt": [rule, "Arn"]} in r["AlertTopicPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ][0]["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert r["PlansBucketPolicy"]["Properties"]["Bucket"] == {"Ref": "PlansBucket"}
    [egress] = r["TaskSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443), egress
    assert "SecurityGroupIngress" not in r["TaskSecurityGroup"]["Properties"]
    bucket = r["PlansBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    old_versions = rules["ExpireOldLeaseAndPlanVersions"]
    assert old_versions["Status"] == "Enabled"
    assert old_versions["Prefix"] == {
        "Fn::Sub": "${PlansPrefix}/"
    }, "the rule covers plans and leases"
    assert old_versions["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "NoncurrentVersionDays"}
    }
    assert old_versions["ExpiredObjectDeleteMarker"] is True, "released leases leave delete markers"
    pod_identity = r["RunnerPodIdentity"]["Properties"]
    cronjob = {d["kind"]: d for d in yaml.safe_load_all(CRONJOB.read_text()) if d}
    account = cronjob["ServiceAccount"]["metadata"]
    assert (pod_identity["Namespace"], pod_identity["ServiceAccount"]) == (
        account["namespace"],
        account["name"],
    ), "the pod identity association names the manifest's service account"
    assert pod_identity["RoleArn"] == {"Fn::GetAtt": ["RunnerRole", "Arn"]}
    types = {res["Type"] for res in r.values()} | {
        res["Type"] for res in load_template(MEMBER_TEMPLATE)["Resources"].values()
    }
    from moto.cloudformation.parsing import get_model_map

    skipped = types - set(get_model_map())
    assert (
        skipped == MOTO_SKIPS
    ), f"moto skips {sorted(skipped)}, MOTO_SKIPS says {sorted(MOTO_SKIPS)}"


# ---------------------------------------------------------------- moto


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server():
    port = free_port()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                assert server.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not answer in 30s"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def client(ctx, service: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=ctx["moto"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_stack(ctx, name: str, template: Path, parameters: dict) -> dict:
    cfn = client(ctx, "cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=template.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 60
    while True:
        [stack] = cfn.describe_stacks(StackName=name)["Stacks"]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        assert time.monotonic() < deadline, f"{name}: still {stack['StackStatus']}"
        time.sleep(0.2)
    assert stack["StackStatus"] == "CREATE_COMPLETE", f"{name}: {stack['StackStatus']}"
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    # moto lists each resource type it skips as an empty entry.
    stack["resources"] = {r["LogicalResourceId"]: r for r in resources if "LogicalResourceId" in r}
    stack["outputs"] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return stack


def policy_document(value) -> dict:
    """A policy document as IAM returns it: parsed by boto3, or, for an
    inline policy of a role moto's CloudFormation made, the Python repr of
    the template's dict (a moto quirk)."""
    if isinstance(value, dict):
        return value
    text = urllib.parse.unquote(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


def role_name_of(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


@check
def main_template_deploys_to_moto(ctx):
    ec2 = client(ctx, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"]
        for i in (1, 2)
    ]
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/iam-rotate@sha256:" + "ab" * 32
    stack = create_stack(
        ctx,
        "iam-rotate",
        MAIN_TEMPLATE,
        {
            "Image": image,
            "VpcId": vpc,
            "SubnetIds": ",".join(subnets),
            "GitHubRepository": "example/rotations",
            "EksClusterName": "platform",
            "AlertEmail": "security@example.com",
        },
    )
    created = {r["ResourceType"] for r in stack["resources"].values()}
    template_types = {r["Type"] for r in load_template(MAIN_TEMPLATE)["Resources"].values()}
    assert created == template_types - MOTO_SKIPS, f"created {sorted(created)}"
    out = stack["outputs"]
    bucket = out["PlansBucket"]
    assert out["PlansDir"] == f"s3://{bucket}/plans", out["PlansDir"]

    # moto's CloudFormation applies a bucket's encryption and tags only;
    # versioning, lifecycle and the public access block are checked in
    # `template_wiring`.
    s3 = client(ctx, "s3")
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    iam = client(ctx, "iam")
    runner_arn = out["RunnerRoleArn"]
    runner = iam.get_role(RoleName=role_name_of(runner_arn))["Role"]
    trust = statements_by_sid(runner["AssumeRolePolicyDocument"])
    assert trust["EcsTasksOfThisAccount"]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    github = trust["GitHubWorkflowOfOneRepositoryAndEnvironment"]["Condition"]["StringEquals"]
    assert github["token.actions.githubusercontent.com:sub"] == (
        "repo:example/rotations:environment:iam-rotate"
    )
    assert trust["EksPodIdentity"]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    [name] = iam.list_role_policies(RoleName=runner["RoleName"])["PolicyNames"]
    deployed = policy_document(
        iam.get_role_policy(RoleName=runner["RoleName"], PolicyName=name)["PolicyDocument"]
    )
    want = rendered("org-runner.json", [("PLANS_BUCKET", bucket)])
    assert deployed == want, f"the runner role's policy is not org-runner.json:\n{deployed}"

    ecs = client(ctx, "ecs")
    task = ecs.describe_task_definition(taskDefinition=out["TaskDefinitionArn"])["taskDefinition"]
    # moto keeps a task definition's family, memory and containers; its
    # launch type, network mode and roles are checked in `template_wiring`.
    assert task["family"] == "iam-rotate" and task["memory"] == "512", task
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    assert list(containers) == ["run", "needs-attention"], list(containers)
    for c in containers.values():
        assert c["image"] == image
        assert c["readonlyRootFilesystem"] is True and c["user"] == "65532:65532", c["name"]
        env = {e["name"]: e["value"] for e in c["environment"]}
        assert env["IAM_ROTATE_PLANS_DIR"] == out["PlansDir"], env
    assert containers["needs-attention"]["dependsOn"] == [
        {"containerName": "run", "condition": "COMPLETE"}
    ]
    assert containers["needs-attention"]["command"][-2:] == ["status", "--needs-attention"]
    assert containers["run"]["essential"] is False and containers["needs-attention"]["essential"]

    events = client(ctx, "events")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"]}
    topic = out["AlertTopicArn"]
    assert len(rules) == 2, list(rules)
    for rule in rules.values():
        pattern = json.loads(rule["EventPattern"])
        assert pattern["detail"]["clusterArn"] == [out["ClusterArn"]], pattern
        targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert [t["Arn"] for t in targets] == [topic], targets

    groups = ec2.describe_security_groups(
        GroupIds=[stack["resources"]["TaskSecurityGroup"]["PhysicalResourceId"]]
    )["SecurityGroups"]
    [group] = groups
    assert group["IpPermissions"] == [], "nothing comes in"
    # moto applies a group's ingress rules but not SecurityGroupEgress (it
    # keeps the default allow-all); the egress rule is checked in
    # `template_wiring`.
    assert group["VpcId"] == vpc
    logs = client(ctx, "logs")
    name = stack["resources"]["LogGroup"]["PhysicalResourceId"]
    [log_group] = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    options = containers["run"]["logConfiguration"]["options"]
    assert options["awslogs-group"] == name, options
    assert log_group["retentionInDays"] == 400


@check
def runner_trusts_only_ecs_tasks_by_default(ctx):
    ec2 = client(ctx, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.41.1.0/24")["Subnet"]["SubnetId"]
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/iam-rotate:0.1.0"
    parameters = {
        "Image": image,
        "VpcId": vpc,
        "SubnetIds": subnet,
        "RunnerRoleName": "runner-plain",
    }
    create_stack(ctx, "iam-rotate-plain", MAIN_TEMPLATE, parameters)
    trust = client(ctx, "iam").get_role(RoleName="runner-plain")["Role"]["AssumeRolePolicyDocument"]
    # moto leaves a `None` where AWS::NoValue removes a list element.
    statements = [s for s in trust["Statement"] if s is not None]
    assert [s["Sid"] for s in statements] == ["EcsTasksOfThisAccount"], statements


@check
def member_template_deploys_to_moto(ctx):
    stack = create_stack(
        ctx,
        "iam-rotate-member",
        MEMBER_TEMPLATE,
        {"RunnerAccountId": "210987654321", "ExternalId": "rotations-2026"},
    )
    iam = client(ctx, "iam")
    arn = stack["outputs"]["RoleArn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:role/IamRotate", arn
    role = iam.get_role(RoleName="IamRotate")["Role"]
    [statement] = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::210987654321:root"}
    assert statement["Condition"] == {
        "ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::210987654321:role/iam-rotate-runner"},
        "StringEquals": {"sts:ExternalId": "rotations-2026"},
    }, statement["Condition"]
    [name] = iam.list_role_policies(RoleName="IamRotate")["PolicyNames"]
    deployed = policy_document(
        iam.get_role_policy(RoleName="IamRotate", PolicyName=name)["PolicyDocument"]
    )
    assert deployed == policy("member-role.json"), f"not member-role.json:\n{deployed}"
    # Without an external id the trust has no sts:ExternalId condition.
    create_stack(
        ctx,
        "iam-rotate-member-plain",
        MEMBER_TEMPLATE,
        {"RunnerAccountId": "210987654321", "RoleName": "IamRotatePlain"},
    )
    plain = iam.get_role(RoleName="IamRotatePlain")["Role"]["AssumeRolePolicyDocument"]
    assert set(plain["Statement"][0]["Condition"]) == {"ArnEquals"}


# ---------------------------------------------------------------- the CLI


def workflow_invocations() -> list[tuple[str, list[str]]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow.get("on", workflow.get(True))
    inputs = on["workflow_dispatch"].get("inputs", {})
    found = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run")
            if not script:
                continue
            values = {}
            for name, value in step.get("env", {}).items():
                m = re.fullmatch(r"\$\{\{ inputs\.([\w-]+) \}\}", str(value))
                if m:
                    values[name] = inputs[m.group(1)].get("default") or SAMPLE_INPUTS[m.group(1)]
            for argv in shell_invocations(script):
                argv = [
                    re.sub(r"^\$(\w+)$", lambda m: values.get(m.group(1), m.group(0)), a)
                    for a in argv
                ]
                found.append((f"{WORKFLOW.name}: {step['name']}", argv))
    return found


def shell_invocations(script: str) -> list[list[str]]:
    """Each command line of a shell script that starts with `iam-rotate`,
    its arguments up to the first shell operator."""
    joined = re.sub(r"\\\n", " ", script)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "iam-rotate":
            continue
        argv = []
        for word in words[1:]:
            if word in {"|", "||", "&&", ";", ">", ">>", "2>", "<"}:
                break
            argv.append(word)
        commands.append(argv)
    return commands


def fargate_invocations() -> list[tuple[str, list[str]]]:
    template = load_template(MAIN_TEMPLATE)
    parameters = defaults(template)
    task = template["Resources"]["TaskDefinition"]["Properties"]
    return [
        (f"{MAIN_TEMPLATE.name}: container {c['Name']}", resolve(c["Command"], parameters))
        for c in task["ContainerDefinitions"]
    ]


def kubernetes_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for doc in yaml.safe_load_all(CRONJOB.read_text()):
        if doc and doc["kind"] == "CronJob":
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                found.append((f"{CRONJOB.name}: container {c['name']}", c["args"]))
    return found


def doc_invocations() -> list[tuple[str, list[str]]]:
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", DEPLOY_DOC.read_text(), re.S)
    return [(f"{DEPLOY_DOC.name}", argv) for block in blocks for argv in shell_invocations(block)]


def parse_only(binary: str, argv: list[str]) -> subprocess.CompletedProcess:
    """The binary's own parser on `argv`: with --help appended, clap checks
    every flag and every value up to it, prints help and exits 0, without
    running the command or reading any file, variable or AWS."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()}
    return subprocess.run([binary, *argv, "--help"], capture_output=True, text=True, env=env)


def without_pending(argv: list[str]) -> list[str]:
    out, skip = [], 0
    for word in argv:
        if skip:
            skip -= 1
        elif word in PENDING_FLAGS:
            skip = len(PENDING_FLAGS[word])
        else:
            out.append(word)
    return out


@check
def pending_flags_are_still_unknown_to_the_binary(ctx):
    arrived = []
    for flag, sample in PENDING_FLAGS.items():
        done = parse_only(ctx["binary"], [flag, *sample, "status"])
        if f"unexpected argument '{flag}'" not in done.stderr:
            arrived.append(flag)
    assert not arrived, (
        f"{arrived} parse now: take them out of PENDING_FLAGS in scripts/check-deploy.py "
        "and out of the table in docs/deploy.md"
    )


@check
def every_recipe_command_parses_with_the_binary(ctx):
    binary = ctx["binary"]
    sources = {
        "workflow": workflow_invocations(),
        "task definition": fargate_invocations(),
        "cronjob": kubernetes_invocations(),
        "docs/deploy.md": doc_invocations(),
    }
    # The extraction must not lose a recipe's commands to a change of layout.
    counts = {name: len(found) for name, found in sources.items()}
    assert counts == {
        "workflow": 4,
        "task definition": 2,
        "cronjob": 2,
        "docs/deploy.md": 2,
    }, counts
    invocations = [i for found in sources.values() for i in found]
    commands = {" ".join(argv) for _, argv in invocations}
    assert any("status --needs-attention" in c for c in commands)
    assert any(re.search(r"\brun --all\b", c) for c in commands)
    problems = []
    used_pending = set()
    for where, argv in invocations:
        used_pending |= set(argv) & set(PENDING_FLAGS)
        done = parse_only(binary, without_pending(argv))
        if done.returncode != 0 or "Usage:" not in done.stdout:
            problems.append(f"{where}: iam-rotate {shlex.join(argv)}\n{done.stderr.strip()}")
    assert not problems, "\n".join(problems)
    print(f"    {len(invocations)} commands parsed; pending flags used: {sorted(used_pending)}")


@check
def pending_flags_are_documented_and_s3_state_is_known(ctx):
    doc = DEPLOY_DOC.read_text()
    for flag in PENDING_FLAGS:
        assert f"`{flag}" in doc, f"docs/deploy.md does not say that {flag} is pending"
    help_text = subprocess.run([ctx["binary"], "--help"], capture_output=True, text=True).stdout
    supports_s3 = "s3://" in help_text
    assert supports_s3 != S3_PLANS_PENDING, (
        "the binary now documents s3:// plans: set S3_PLANS_PENDING = False in "
        "scripts/check-deploy.py and update docs/deploy.md"
        if supports_s3
        else "S3_PLANS_PENDING is False but --help does not mention s3:// plans"
    )


@check
def recipe_environment_variables_are_the_binarys(ctx):
    help_text = subprocess.run([ctx["binary"], "--help"], capture_output=True, text=True).stdout
    names = set()
    for doc in yaml.safe_load_all(CRONJOB.read_text()):
        if doc and doc["kind"] == "ConfigMap":
            names |= set(doc["data"])
    task = load_template(MAIN_TEMPLATE)["Resources"]["TaskDefinition"]["Properties"]
    for c in task["ContainerDefinitions"]:
        names |= {e["Name"] for e in c["Environment"]}
    names |= set(re.findall(r"-e (IAM_ROTATE_\w+)", WORKFLOW.read_text()))
    ours = {n for n in names if n.startswith("IAM_ROTATE_")}
    assert ours >= {"IAM_ROTATE_PLANS_DIR", "IAM_ROTATE_LOG_FORMAT"}, ours
    unknown = sorted(n for n in ours if n not in help_text)
    assert not unknown, f"not variables of iam-rotate (see iam-rotate --help): {unknown}"


# ---------------------------------------------------------------- the image


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, rest.strip()))
    return stages


@check
def dockerfile_is_multistage_nonroot_and_runs_iam_rotate(ctx):
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    args = dict(a.split("=", 1) for i, a in preamble if i == "ARG" and "=" in a)
    cargo = (ROOT / "Cargo.toml").read_text()
    rust_version = re.search(r'^rust-version = "([^"]+)"', cargo, re.M).group(1)
    assert (
        args.get("RUST_VERSION") == rust_version
    ), f"RUST_VERSION {args} vs Cargo.toml {rust_version}"
    build = stages[0]
    assert build[0][1].startswith("rust:${RUST_VERSION}") and " AS " in build[0][1].upper()
    runs = " ".join(rest for i, rest in build if i == "RUN")
    assert "cargo build --release --locked" in runs, runs
    copied = []
    for instruction, rest in build:
        if instruction == "COPY":
            *sources, _ = rest.split()
            copied += [s.rstrip("/") for s in sources]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
    # The build stage's context alone (what it copies) is a package whose
    # dependencies resolve from Cargo.lock as it is (`--locked`).
    with tempfile.TemporaryDirectory() as context:
        for source in copied:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, Path(context) / source)
            else:
                shutil.copy2(ROOT / source, Path(context) / source)
        done = subprocess.run(
            ["cargo", "metadata", "--locked", "--offline", "--format-version", "1"],
            capture_output=True,
            text=True,
            cwd=context,
        )
        assert done.returncode == 0, f"the image's build context is not a package:\n{done.stderr}"
        packages = json.loads(done.stdout)["packages"]
        [package] = [p for p in packages if p["name"] == "iam-rotate"]
        assert any(t["name"] == "iam-rotate" and "bin" in t["kind"] for t in package["targets"])
    for path in (ROOT / "src").rglob("*.rs"):
        text = path.read_text()
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', text):
            target = (path.parent / m.group(1)).resolve()
            assert target.is_relative_to(
                ROOT / "src"
            ), f"{path}: {m.group(1)} is not in the image's build context"
    runtime = stages[-1]
    base = runtime[0][1]
    assert base.startswith("gcr.io/distroless/") or base == "scratch", base
    users = [rest for i, rest in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, users
    [entrypoint] = [json.loads(rest) for i, rest in runtime if i == "ENTRYPOINT"]
    assert Path(entrypoint[0]).name == "iam-rotate" and len(entrypoint) == 1, entrypoint
    # The recipes run the image as the same user.
    uid = users[-1].split(":")[0]
    task = load_template(MAIN_TEMPLATE)["Resources"]["TaskDefinition"]["Properties"]
    assert {c["User"].split(":")[0] for c in task["ContainerDefinitions"]} == {uid}
    [cron] = [d for d in yaml.safe_load_all(CRONJOB.read_text()) if d and d["kind"] == "CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == uid
    # The build context holds nothing but what the build copies.
    patterns = [
        p for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    assert patterns[0] == "*", "ignore everything, then name what the build needs"
    assert sorted(p.lstrip("!") for p in patterns[1:]) == sorted(copied), patterns


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(ROOT / "target/debug/iam-rotate"))
    options = parser.parse_args()
    assert Path(
        options.binary
    ).exists(), f"{options.binary}: build it first (cargo build --bin iam-rotate)"
    ctx = {"binary": options.binary}
    passed = failed = 0
    with moto_server() as url:
        ctx["moto"] = url
        for fn in CHECKS:
            started = time.monotonic()
            try:
                fn(ctx)
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failed += 1
                detail = str(error) if isinstance(error, AssertionError) else traceback.format_exc()
                print(f"FAIL {fn.__name__}: {detail}")
            else:
                passed += 1
                print(f"ok   {fn.__name__} ({time.monotonic() - started:.1f}s)")
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
