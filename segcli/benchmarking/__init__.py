"""`segcli benchmark` as a library: measure models' speed, memory, FLOPs and accuracy side by side.

    from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
    from segcli.benchmarking.subjects import iter_subjects, plan_subjects
    report = run_benchmark(iter_subjects(plan_subjects(["lraspp"])), BenchmarkSettings(sizes=((256, 256),)))
"""
