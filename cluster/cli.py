"""The `freshvec` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="freshvec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("stack", help="start the local Kafka and Weaviate and report where they listen")
    args = parser.parse_args(argv)
    if args.command == "stack":
        from deploy.local import stack

        stack.main(["up"])
        print("local stack is up; the ingestion pipeline is not built yet")
    sys.exit(0)


if __name__ == "__main__":
    main()
