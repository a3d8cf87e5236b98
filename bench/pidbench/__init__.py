"""pidbench: side-by-side benchmarks of pidone against other inits.

inits.py       Init: how to wrap a child command, version; the registry
namespace.py   one init as PID 1 of a fresh PID namespace, found from the host
procfs.py      what the kernel says about a process (/proc parsing)
channel.py     a named pipe that child programs report through
measure.py     Metric, Settings, Round, Results and the Measurement protocol
measures/      one module per measurement (memory, idle, orphans, signals, shutdown)
children/      programs run under the init (stdlib only, any python3)
targets.py     pidone's targets, judged against the results
report.py      the table and RESULTS.md
"""
