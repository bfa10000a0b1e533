"""The ``ffsim`` command line.

Errors in user input (profiles, arguments, data) are printed as one clear message and exit with status
2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffsim.profiles import ProfileError, describe_profile, list_profiles, load_profile

__all__ = ["main"]


def _cmd_profiles(args: argparse.Namespace) -> int:
    if args.action == "list":
        found = list_profiles()
        width = max((len(n) for n in found), default=4)
        for name, path in found.items():
            try:
                p = load_profile(path)
                desc = p.meta.description
                status = p.profile_hash[:12]
            except ProfileError as exc:
                desc = f"INVALID: {exc.issues[0]}" if exc.issues else "INVALID"
                status = "-" * 12
            print(f"{name:<{width}}  {status}  {desc}")
        return 0
    if not args.name:
        print("ffsim: error: 'profiles show' needs a profile name or a path to a .toml file", file=sys.stderr)
        return 2
    print(describe_profile(load_profile(args.name)))
    return 0


def _cmd_crossbar_demo(args: argparse.Namespace) -> int:
    from ffsim.experiments.retention import format_retention, run_retention
    from ffsim.io import write_json_atomic

    res = run_retention(args.profile, in_features=args.in_features, out_features=args.out_features,
                        batch=args.batch, seed=args.seed, fab_seed=args.fab_seed)
    print(format_retention(res))
    if args.out:
        out = Path(args.out)
        write_json_atomic(out / "retention.json", res)
        print(f"results: {out / 'retention.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ffsim", description="Forward-Forward on simulated analog chips.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profiles", help="list or show hardware profiles")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="profile name or path to a .toml file (for 'show')")
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("crossbar-demo", help="program a matrix on a chip and read it back as time passes")
    p.add_argument("--profile", default="pcm")
    p.add_argument("--in-features", type=int, default=784)
    p.add_argument("--out-features", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="run seed (weights, inputs, run-time noise)")
    p.add_argument("--fab-seed", type=int, default=1, help="fabrication seed of the chip")
    p.add_argument("--out", help="folder for retention.json")
    p.set_defaults(func=_cmd_crossbar_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ProfileError as exc:
        print(f"ffsim: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"ffsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ffsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
