"""CDK entry point: ``python -m infra.app [--stage dev] [--out infra/cdk.out]`` from the repository root.

Synthesis is offline: no AWS account, no credentials. It packages the Chalice
app (``chalice package`` underneath: pip fetches Linux wheels for
requirements.txt, cached in .chalice/deployments/) and writes a cloud assembly
(CloudFormation template + the deployment zip as an asset) that
``npx aws-cdk@2 deploy --app <out>`` deploys.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path

from infra.config import DEFAULT_STAGE, PYTHON_RUNTIME, REPO_ROOT, StackOptions, load_stage

# CDK context keys (``-c key=value`` or cdk.json) for each option; command-line flags win.
CONTEXT_KEYS = {
    "tick_reserved_concurrency": "tickReservedConcurrency",
    "xray_tracing": "xrayTracing",
    "cors_origin": "corsOrigin",
    "log_level": "logLevel",
    "access_logs": "accessLogs",
    "api_gateway_cloudwatch_role": "apiGatewayCloudWatchRole",
}


@contextlib.contextmanager
def _package_for_runtime(runtime: str):
    """Make ``chalice package`` build for ``runtime`` instead of the running interpreter's version.

    Chalice derives the Lambda runtime (and the ABI of the wheels it fetches)
    from ``sys.version_info``; pinning it here makes the runtime explicit and the
    package match it, whatever Python runs the synthesis.
    """
    from chalice.config import Config
    from chalice.deploy.packager import BaseLambdaDeploymentPackager

    if runtime not in BaseLambdaDeploymentPackager._RUNTIME_TO_ABI:
        raise SystemExit(f"this Chalice version cannot package for {runtime}")
    original = Config.lambda_python_version
    Config.lambda_python_version = property(lambda self: runtime)
    try:
        with warnings.catch_warnings():
            # "You are currently running python3.x, but ... is python3.y": intended, see above.
            warnings.filterwarnings("ignore", message="You are currently running python")
            yield
    finally:
        Config.lambda_python_version = original


def _truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SystemExit(f"expected true or false, got {value!r}")


def resolve_options(context: dict, overrides: dict) -> StackOptions:
    """Options from CDK context, then command-line overrides (None = not given)."""
    values = {}
    for f in fields(StackOptions):
        raw = overrides.get(f.name)
        if raw is None:
            raw = context.get(CONTEXT_KEYS[f.name])
        if raw is None:
            continue
        values[f.name] = _truthy(raw) if isinstance(f.default, bool) else str(raw)
    try:
        return StackOptions(**values)
    except Exception as exc:  # a bad origin or level: the settings' own message
        raise SystemExit(f"bad stack option: {exc}") from None


def _prepare_chalice_import(options: StackOptions) -> None:
    """Import the app the way `chalice package` will, and opt in to WebSockets if app.py does not.

    Chalice refuses to package an app that uses WebSocket handlers without
    ``app.experimental_feature_flags.update(["WEBSOCKETS"])`` in app.py; the
    packager imports ``app`` once (sys.modules), so opting in here is enough.
    """
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("CDK_DEFAULT_REGION", "us-east-1"))
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never probe for credentials
    # The app reads its CORS origin at import (Chalice gives it to each route then): the
    # packaged API's preflight answers come from this import, the Lambda gets the same value.
    from chalicelib import settings as app_settings

    if options.cors_origin:
        os.environ[app_settings.CORS_ORIGIN] = options.cors_origin
    else:
        os.environ.pop(app_settings.CORS_ORIGIN, None)
    import app as chalice_app_module  # noqa: WPS433 (the repository's app.py)

    cors = chalice_app_module.app.api.cors
    if (cors.allow_origin if cors else "") != options.cors_origin:
        raise SystemExit("app.py was imported before synthesis with another CORS origin")

    flags = chalice_app_module.app.experimental_feature_flags
    if "WEBSOCKETS" not in flags:
        flags.add("WEBSOCKETS")


def synth(stage_name: str, outdir: Path, agent_function_arns: list[str] | None = None,
          overrides: dict | None = None) -> Path:
    """Synthesize one stage into ``outdir``; returns the template's path."""
    from aws_cdk import App

    from infra.stack import AgentSchedulerStack

    stage = load_stage(stage_name)
    outdir = outdir.resolve()
    cwd = os.getcwd()
    # The Chalice construct writes its intermediate package to ./chalice.out: keep it out of the repo.
    with tempfile.TemporaryDirectory(prefix="chalice-out-") as work:
        os.chdir(work)
        try:
            app = App(outdir=str(outdir))
            if agent_function_arns is None:
                raw = app.node.try_get_context("agentFunctionArns")
                agent_function_arns = [a.strip() for a in str(raw).split(",") if a.strip()] if raw else None
            context = {key: app.node.try_get_context(key) for key in CONTEXT_KEYS.values()}
            options = resolve_options(context, overrides or {})
            _prepare_chalice_import(options)
            with _package_for_runtime(PYTHON_RUNTIME):
                stack = AgentSchedulerStack(app, stage, agent_function_arns=agent_function_arns, options=options)
            assembly = app.synth()
        finally:
            os.chdir(cwd)
    template = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
    return template


def _tidy(outdir: Path) -> None:
    """Drop assets of earlier syntheses (CDK never removes them): keep what the manifests reference."""
    keep = set()
    for manifest in outdir.glob("*.assets.json"):
        for entry in json.loads(manifest.read_text()).get("files", {}).values():
            keep.add(entry["source"]["path"])
    for old in outdir.glob("asset.*"):
        if old.name not in keep:
            shutil.rmtree(old) if old.is_dir() else old.unlink()


def package_path(template: Path) -> Path:
    """The deployment package the template's functions use (their CodeUri's asset)."""
    resources = json.loads(template.read_text())["Resources"]
    keys = {r["Properties"]["CodeUri"]["Key"] for r in resources.values() if r["Type"] == "AWS::Serverless::Function"}
    if len(keys) != 1:
        raise SystemExit(f"expected one code asset shared by every function, found {sorted(keys)}")
    return template.parent / f"asset.{keys.pop()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default=os.environ.get("STAGE") or DEFAULT_STAGE)
    parser.add_argument("--out", default=os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "infra" / "cdk.out"))
    parser.add_argument("--agent-function-arns", default=None,
                        help="comma-separated ARNs (or ARN patterns) `lambda` agents may invoke")
    parser.add_argument("--tick-reserved-concurrency", action=argparse.BooleanOptionalAction, default=None,
                        help="reserve one concurrent execution for the tick (off by default)")
    parser.add_argument("--xray", dest="xray_tracing", action=argparse.BooleanOptionalAction, default=None,
                        help="active X-Ray tracing (off by default)")
    parser.add_argument("--cors-origin", default=None, help="the dashboard's origin, e.g. https://dash.example.com")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR")
    parser.add_argument("--access-logs", action=argparse.BooleanOptionalAction, default=None,
                        help="API access logs (on by default)")
    parser.add_argument("--api-gateway-cloudwatch-role", action=argparse.BooleanOptionalAction, default=None,
                        help="set the account's API Gateway CloudWatch role, which REST access logs need (on by default)")
    args = parser.parse_args(argv)
    arns = [a.strip() for a in args.agent_function_arns.split(",") if a.strip()] if args.agent_function_arns else None
    overrides = {name: getattr(args, name) for name in CONTEXT_KEYS}
    outdir = Path(args.out)
    template = synth(args.stage, outdir, arns, overrides)
    _tidy(outdir)
    package = package_path(template)
    print(f"synthesized stage {args.stage!r}: {template}")
    print(f"Lambda deployment package: {package.name} ({package.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
