"""Azure ML's parallel jobs, run by Stepwise: the mini-batch splitting, the failure accounting and
the driver that a `type: parallel` step runs as its command (standard library only: it runs
inside the step's sandbox, with pandas only when the step's environment has it)."""
