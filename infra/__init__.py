"""Agent Scheduler infrastructure: a CDK v2 app around the Chalice app (see infra/README.md).

Run it from the repository root: ``python -m infra.app`` (``make synth``).
"""
