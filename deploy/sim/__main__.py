"""python -m freshvec.deploy.sim up|down|status: the simulated two-region layout.

    up      make the hosts and start sshd, toxiproxy, the brokers and Weaviate (idempotent)
    down    remove everything `up` made, also after a failed `up`
    status  hosts, processes, proxies, addresses per region and measured round trips

Needs root. State (keys, data, logs, ledger.json, layout.json) is under
$FRESHVEC_STATE/sim, default <repo>/.run/sim.
"""

from __future__ import annotations

import argparse
import sys

from freshvec.core.errors import FreshvecError
from freshvec.deploy.sim import commands


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m freshvec.deploy.sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args(argv).action
    try:
        {"up": commands.up, "down": commands.down, "status": commands.status}[action]()
    except FreshvecError as exc:  # one line: what failed, and what to do
        hint = "\n(`python -m freshvec.deploy.sim down` removes what this `up` made)" if action == "up" else ""
        sys.exit(f"error: {exc}{hint}")


if __name__ == "__main__":
    main()
