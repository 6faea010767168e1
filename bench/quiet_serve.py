"""Run tests/support/serve.py with the root logger at a chosen level.

serve.py logs at DEBUG, which the tests need but which would make a
throughput benchmark measure logging.  ``logging.basicConfig`` does nothing
once the root logger has a handler, so configuring it here first keeps the
level given by ``FLUP_BENCH_LOG_LEVEL`` (default WARNING).
"""

from __future__ import absolute_import

import logging
import os
import runpy
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE_SCRIPT = os.path.join(REPO_ROOT, 'tests', 'support', 'serve.py')

logging.basicConfig(
    level=os.environ.get('FLUP_BENCH_LOG_LEVEL', 'WARNING'),
    format='%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s',
    stream=sys.stderr)
# serve.py imports its apps module from its own folder.
sys.path[0] = os.path.dirname(SERVE_SCRIPT)
sys.argv[0] = SERVE_SCRIPT
runpy.run_path(SERVE_SCRIPT, run_name='__main__')
