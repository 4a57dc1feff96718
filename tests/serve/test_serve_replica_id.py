"""A replica of `segcli serve --engine ray` names itself: the X-Segcli-Replica header on every answer and a
segcli_replica line in /metrics, so a client (and a test) can tell which of several replicas answered."""

from __future__ import annotations

from serve_support import client, metric, png_bytes, post_image
from robustness_support import random_rgb


def test_a_replica_names_itself_on_every_answer_and_in_its_metrics(tiny_engine):
    with client(tiny_engine, replica="r-1", token="t0ken") as served:
        auth = {"Authorization": "Bearer t0ken"}
        answers = [served.get("/healthz"), served.get("/v1/models"), served.get("/v1/models", headers=auth),
                   served.get("/nowhere", headers=auth),
                   post_image(served, png_bytes(random_rgb(24, 32, 5)), "?outputs=label", **auth)]
        assert [answer.status_code for answer in answers] == [200, 401, 200, 404, 200]
        assert all(answer.headers["x-segcli-replica"] == "r-1" for answer in answers)
        text = served.get("/metrics", headers=auth).text
        assert metric(text, 'segcli_replica{replica="r-1"}') == 1


def test_the_local_server_sends_no_replica_header(tiny_engine):
    with client(tiny_engine) as served:
        answer = served.get("/healthz")
        assert answer.status_code == 200 and "x-segcli-replica" not in answer.headers
        assert "segcli_replica" not in served.get("/metrics").text
