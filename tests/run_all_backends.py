"""Runs the test suite once per Keras backend, each in its own process.

    python tests/run_all_backends.py [pytest args...]

`KERAS_BACKEND` is set per process (tensorflow, jax, torch, or the list in
`OPTZOO_BACKENDS`, comma-separated). Exit status is 0 only if every backend
passed. pytest's exit code 5 ("no tests collected", e.g. a `-k` filter that
selects nothing on one backend) counts as a failure: a backend that ran no
test has not been tested.
"""

import os
import re
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
CLOSING = re.compile(r"^=*\s*(\d+ \w+.*|no tests ran.*) in [\d.]+s")


def main(argv):
    backends = os.environ.get("OPTZOO_BACKENDS", ",".join(BACKENDS)).split(",")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    status = {}
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv]
        print(f"\n===== KERAS_BACKEND={backend}: {' '.join(cmd)}", flush=True)
        start = time.time()
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        last = ""
        for line in proc.stdout:
            sys.stdout.write(line)
            if CLOSING.match(line):
                last = line
        code = proc.wait()
        for count, kind in SUMMARY.findall(last):
            key = "failed" if kind.startswith("error") else kind
            if key in totals:
                totals[key] += int(count)
        if code == 5:
            print(f"!! {backend}: pytest collected no tests; counted as a failure.")
        status[backend] = (code, time.time() - start)
    print("\n===== summary per backend")
    for backend, (code, seconds) in status.items():
        verdict = "ok" if code == 0 else f"FAILED (pytest exit {code})"
        print(f"  {backend:<11} {verdict:<28} {seconds:6.1f} s")
    ok = all(code == 0 for code, _ in status.values())
    print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
