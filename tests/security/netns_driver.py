"""Run inside ``unshare -rn``: a private network namespace that only this process tree sees.

Puts 10.1.2.3 on the namespace's own loopback device, starts ``ckptd serve`` bound there
(with the settings in the environment and the flags given), asks it for its status with the
CLI, stops it, and prints one JSON object: exit codes and outputs. Nothing here can reach or
be reached from the host's network.

    unshare -rn python netns_driver.py STORE [SERVE FLAGS...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import WaitTimeout, wait_for

ADDRESS = "10.1.2.3"


def main() -> None:
    store, flags = sys.argv[1], sys.argv[2:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
    ready = f"{store}.ready"
    control = f"tcp://{ADDRESS}:5550"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ckptd", "--root", store, "serve", "--control", control,
         "--dispatch", f"tcp://{ADDRESS}:5551", "--ready-file", ready, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result: dict[str, object] = {}
    try:
        wait_for(lambda: os.path.exists(ready) or daemon.poll() is not None, timeout=30)
        if daemon.poll() is None:
            status = subprocess.run([sys.executable, "-m", "ckptd", "--connect", control,
                                     "status", "--json"], capture_output=True, text=True,
                                    timeout=60)
            result.update(status_rc=status.returncode, status=status.stdout + status.stderr)
            with open(ready) as handle:
                result["bound"] = json.load(handle)
    except WaitTimeout:
        result["error"] = "the daemon neither became ready nor exited"
    finally:
        if daemon.poll() is None:
            daemon.terminate()
        output, _ = daemon.communicate(timeout=60)
    result.update(daemon_rc=daemon.returncode, log=output)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
