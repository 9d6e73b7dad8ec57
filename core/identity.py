"""Who is who: the model behind the vectors, and the names by which the parts find each other in Ray.

The consumers call the embedder by its Serve names and the CLI finds the consumers by their actor
names; both sides import them from here, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

APP_NAME = "freshvec"  # the Serve application: the embedder and its HTTP routes
NEXT_APP_NAME = "freshvec-next"  # a reindex's model, until the switch (no HTTP route)
DEPLOYMENT_NAME = "Embedder"
RAY_NAMESPACE = "freshvec"  # the consumer actors' namespace
# Ray's internal key-value store: each consumer's backlog report (BACKLOG_PREFIX + its name) and the
# backlog autoscaling policy's last decision, read by the policy and by `freshvec status`.
KV_NAMESPACE = "freshvec"
BACKLOG_PREFIX = "backlog:"
DECISION_KEY = "autoscale:decision"
SIZING_KEY = "sizing"  # what serve/sizing.py chose for `auto` settings, for `freshvec status`
REINDEX_KEY = "reindex"  # a reindex in progress (cluster/reindex.py), for --resume/--abort and status


@dataclass(frozen=True)
class ModelInfo:
    """The model a deployment embeds with, as the embedder reports it; a collection holds one model's vectors."""

    model: str
    dim: int


def consumer_name(region: str, topic: str, partition: int) -> str:
    """One consumer's name in logs, the Ray dashboard, `ray list actors` and `freshvec status`."""
    return f"consumer:{region}:{topic}:{partition}"


def shadow_name(region: str, topic: str, partition: int) -> str:
    """A reindex's consumer of the same partition (it replays it into the next collection)."""
    return f"reindex:{region}:{topic}:{partition}"
