"""The one place where model-written code runs.

Why this shape: evaluation executes untrusted code thousands of times, so it has to be
both contained and cheap. A small pool of long-lived *worker* processes is started once;
each worker sets up, one time, a private mount namespace with a read-only view of the
machine (chroot), an empty network namespace and no environment. For every sample the
worker forks a child that becomes PID 1 of a fresh PID namespace, gets a fresh
size-limited tmpfs as its only writable directory, joins per-worker memory/pids cgroups,
drops to a per-worker unprivileged uid with no capabilities and `no_new_privs`, and only
then runs the code. When that child exits or is SIGKILLed at its deadline the kernel kills
everything left in its PID namespace, so daemons and grandchildren cannot survive.

A pass is never read from an exit code or from printed text: the harness writes a random
per-sample token to a private pipe only after the tests returned normally. (Code that runs
in the same interpreter as the tests could in principle dig that token out of the harness'
memory; no in-process harness can rule that out, which is why outputs of the `io` jobs are
sent back as plain data, one line per input, and compared outside the sample: by the worker,
as they arrive, so a sample is killed at its first wrong output.)

Where a mechanism is missing (not root, no namespaces, no cgroups) the pool still runs,
with resource limits and process-group kills, and says so in `Sandbox.warnings`.

Layout: `model` (typed limits, jobs, results), `wire` (tagged JSON and framing), `jail`
(isolation set up once per worker), `child` (hardening of each sample), `jobs` (the runners
inside the sample), `supervise` (deadline, kill, verdict), `oracle` (EvalPlus output
comparison, in the worker), `worker` (the worker process) and
`pool` (the `Sandbox` the evaluator uses).
"""

from evolcoder.eval.sandbox.jail import HOW_TO_CONTAIN, ROOT_JAIL, ROOT_UID_DROP, RLIMITS_ONLY, USERNS_JAIL
from evolcoder.eval.sandbox.model import Job, Limits, RunResult, SandboxUnavailable
from evolcoder.eval.sandbox.pool import Sandbox, require_containment
from evolcoder.eval.sandbox.wire import decode, digest, encode
from evolcoder.eval.sandbox.worker import _worker_main

__all__ = ["HOW_TO_CONTAIN", "ROOT_JAIL", "ROOT_UID_DROP", "RLIMITS_ONLY", "USERNS_JAIL", "Job", "Limits",
           "RunResult", "Sandbox", "SandboxUnavailable", "require_containment", "decode", "digest", "encode",
           "_worker_main"]
