"""Finding the refused records inside a batch by halving it (actors/isolation.py)."""

from __future__ import annotations

import pytest

from freshvec.actors.isolation import split_refused


class Refused(Exception):
    pass


def service(bad: set[int], calls: list):
    def call(group):
        calls.append(list(group))
        if bad & set(group):
            raise Refused(f"refused {sorted(bad & set(group))}")
        return [x * 10 for x in group]
    return call


@pytest.mark.parametrize("n, bad", [(1, set()), (1, {0}), (8, {3}), (8, {0, 7}), (64, {5, 6, 40}), (7, set(range(7)))])
def test_every_refused_item_is_found_alone_and_every_other_is_done_in_order(n, bad):
    calls: list = []
    done, refused = split_refused(list(range(n)), service(bad, calls), Refused)
    assert sorted(item for item, _ in refused) == sorted(bad)
    assert all(isinstance(exc, Refused) for _, exc in refused)
    flat = [x for group, _ in done for x in group]
    assert flat == [x for x in range(n) if x not in bad]  # order kept
    assert all(out == [x * 10 for x in group] for group, out in done)


def test_one_bad_item_costs_about_two_log_n_calls():
    calls: list = []
    split_refused(list(range(64)), service({17}, calls), Refused)
    assert len(calls) <= 2 * 6 + 1


def test_other_errors_propagate():
    def call(group):
        raise TimeoutError("away")

    with pytest.raises(TimeoutError):
        split_refused([1, 2], call, Refused)


def test_empty_batch_makes_no_call():
    calls: list = []
    assert split_refused([], service(set(), calls), Refused) == ([], [])
    assert calls == []


def _transient_errors():
    import grpc
    from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    return [ActorDiedError(), ActorUnavailableError("restarting", None), GetTimeoutError("slow"),
            BackPressureError(num_queued_requests=10, max_queued_requests=10),
            DeploymentUnavailableError("Embedder"), grpc.RpcError(), ConnectionResetError(), TimeoutError()]


def test_serve_away_or_slow_is_not_a_refusal():
    from freshvec.actors.batch import is_refusal

    for exc in _transient_errors():
        assert not is_refusal(exc), exc


def test_the_replicas_own_exception_is_a_refusal():
    from ray.exceptions import RayTaskError

    from freshvec.actors.batch import is_refusal

    assert is_refusal(TypeError("TextEncodeInput must be ..."))  # Serve's gRPC mode: raised as it is
    assert is_refusal(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert is_refusal(RayTaskError("embed", "traceback", ValueError("bad")))  # its other modes wrap it
