"""The Python side of `cargo xtask bench-service`: oslo.service's eventlet ProcessLauncher
running a do-nothing service in N workers. Each worker reports `ready pid=N` on stderr once its
service has started; the harness times start-up, respawn and TERM from the outside."""
import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

from oslo_config import cfg  # noqa: E402
from oslo_service import service  # noqa: E402

warnings.simplefilter("ignore")


class Idle(service.Service):
    def start(self):
        super().start()
        # One write(2), so that the workers' lines never interleave on the shared pipe.
        os.write(2, f"ready pid={os.getpid()}\n".encode())


conf = cfg.ConfigOpts()
conf([], project="osier-bench")
launcher = service.launch(conf, Idle(), workers=int(sys.argv[1]))
launcher.wait()
