"""Start one of the layout's services from inside its host (run by commands.py, not by hand).

The project's KafkaBroker and WeaviateServer spawn their process and then probe
it; run here, inside the host's namespace, both the spawned process and the
probes see the host's network. The service is detached (own session) and
outlives this launcher, which exits once the service is ready.

    ip netns exec fvsim-a-head ... python -m freshvec.deploy.sim.launch kafka-a
"""

from __future__ import annotations

import sys

from freshvec.core.errors import FreshvecError
from freshvec.deploy.sim import layout


def main(argv: list[str] | None = None) -> None:
    name = (sys.argv[1:] if argv is None else argv)[0]
    try:
        layout.services()[name][1].start()
    except FreshvecError as exc:
        # The caller turns the class name back into the same error in the root namespace.
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
