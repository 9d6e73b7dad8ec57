"""The Grafana dashboard covers every metric freshvec exports."""


def test_grafana_dashboard_has_a_panel_for_every_metric():
    import json

    from freshvec.actors import metrics

    dashboard = json.load(open("deploy/monitoring/freshvec-grafana.json"))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    from freshvec.serve import autoscaling

    names = ["freshvec_freshness_ms", "freshvec_consumer_lag", "freshvec_records", "freshvec_dlq_records",
             "freshvec_batch_size", "freshvec_stage_latency_ms", "freshvec_retries", "freshvec_consumer_stuck_seconds",
             "freshvec_consumer_failed", "freshvec_autoscale_target_replicas"]
    src = open(metrics.__file__).read() + open(autoscaling.__file__).read()
    for name in names:
        assert f'"{name}"' in src  # the metric exists under this name
        assert f"ray_{name}" in exprs, name
