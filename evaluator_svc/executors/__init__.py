"""Where the evaluator runs its candidates: one module per executor, chosen by `EvaluatorConfig.executor`.

    executor = make_executor(config)     # evaluator_svc.executors.registry; "local": sandboxed processes of this
    ran = executor.run(task, cancel)     # server, "ray": Ray tasks; blocks; ran.result is the EvalResult

The names and the Ray options are in `options` (a leaf the config imports), the choice in `registry`, one module
per executor imported only when chosen: Ray is an optional extra.
"""
