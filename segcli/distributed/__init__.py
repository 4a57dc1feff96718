"""`segcli predict --engine ray`: segcli's own engine run by Ray Data actors, on a laptop or a cluster.

The driver plans the outputs (`segcli.outputs.plan`, as a local run does) and resolves and
hash-checks the checkpoint once; `SegmentActor` (actor.py) loads that checkpoint once per actor
and writes each image's set through `segcli.outputs.writer`; `run_on_ray` (run.py) starts or joins
Ray, feeds the planned images to the actors and counts what comes back. Nothing here imports Ray
until a run starts, so `segcli --help` and the local engine never need it.
"""
