"""Run metrics are EMF through Powertools: names, units and values."""
from chalicelib.services import metrics


def test_run_metrics_are_recorded_in_emf():
    m = metrics.metrics
    m.clear_metrics()
    metrics.run_started(lateness_seconds=0.25)
    metrics.run_finished("succeeded", 1200)
    metrics.run_finished("dead", 50)
    emf = m.serialize_metric_set()
    m.clear_metrics()
    names = {d["Name"]: d["Unit"] for d in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {
        "RunsStarted": "Count", "StartLateness": "Milliseconds", "RunsSucceeded": "Count",
        "RunDuration": "Milliseconds", "RunsDead": "Count", "RunsFailed": "Count",
    }
    assert emf["StartLateness"] in (250.0, [250.0])
    assert emf["RunDuration"] == [1200.0, 50.0]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AgentScheduler"
