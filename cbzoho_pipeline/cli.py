"""`cbzoho`: the command line for people and cron.

Sub-commands: `sandbox` (serve the local Chargebee + Zoho sandbox), plus the sync commands added by the
sync itself. Exit codes are part of the interface: 0 success, 1 finished with sync errors, 2 failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from cbzoho_pipeline.sandbox.server import serve

    serve(
        host=args.host,
        port=args.port,
        info_file=Path(args.info_file) if args.info_file else None,
        generate=args.generate,
        seed=args.seed,
        site=args.site,
        org=args.org,
        quiet=args.quiet,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbzoho", description="Chargebee -> Zoho CRM sync on Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="serve the local Chargebee + Zoho CRM sandbox over HTTP")
    sb.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sb.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default: 8765)")
    sb.add_argument("--info-file", help="write every base URL and credential here as JSON")
    sb.add_argument("--generate", type=int, default=0, metavar="N",
                    help="seed N generated customers with subscriptions (default: 0, empty)")
    sb.add_argument("--seed", type=int, default=42, help="random seed of the generated dataset (default: 42)")
    sb.add_argument("--site", default="acme-test", help="Chargebee site to seed (default: acme-test)")
    sb.add_argument("--org", default="sandbox", help="Zoho org to seed (default: sandbox)")
    sb.add_argument("--quiet", action="store_true", help="print nothing on start")
    sb.set_defaults(func=_cmd_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
