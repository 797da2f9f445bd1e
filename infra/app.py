"""CDK entry point: ``python -m infra.app [--stage dev] [--out infra/cdk.out]`` from the repository root.

Synthesis is offline: no AWS account, no credentials. It packages the Chalice
app (``chalice package`` underneath: pip fetches Linux wheels for
requirements.txt, cached in .chalice/deployments/) and writes a cloud assembly
(CloudFormation template + the deployment zip as an asset) that
``npx aws-cdk@2 deploy --app <out>`` deploys.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from infra.config import DEFAULT_STAGE, REPO_ROOT, load_stage


def _prepare_chalice_import() -> None:
    """Import the app the way `chalice package` will, and opt in to WebSockets if app.py does not.

    Chalice refuses to package an app that uses WebSocket handlers without
    ``app.experimental_feature_flags.update(["WEBSOCKETS"])`` in app.py; the
    packager imports ``app`` once (sys.modules), so opting in here is enough.
    """
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("CDK_DEFAULT_REGION", "us-east-1"))
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never probe for credentials
    import app as chalice_app_module  # noqa: WPS433 (the repository's app.py)

    flags = chalice_app_module.app.experimental_feature_flags
    if "WEBSOCKETS" not in flags:
        flags.add("WEBSOCKETS")


def synth(stage_name: str, outdir: Path, agent_function_arns: list[str] | None = None) -> Path:
    """Synthesize one stage into ``outdir``; returns the template's path."""
    from aws_cdk import App

    from infra.stack import AgentSchedulerStack

    stage = load_stage(stage_name)
    _prepare_chalice_import()
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
            stack = AgentSchedulerStack(app, stage, agent_function_arns=agent_function_arns)
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
    args = parser.parse_args(argv)
    arns = [a.strip() for a in args.agent_function_arns.split(",") if a.strip()] if args.agent_function_arns else None
    outdir = Path(args.out)
    template = synth(args.stage, outdir, arns)
    _tidy(outdir)
    package = package_path(template)
    print(f"synthesized stage {args.stage!r}: {template}")
    print(f"Lambda deployment package: {package.name} ({package.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
